// Seeded, labelled PII/PHI evaluation set: documents built from templates (clinical notes,
// support tickets, emails, code with secrets) with exact gold spans, plus hard negatives
// (invalid checksums, SSN look-alikes, order numbers, versions, commit hashes, UUIDs).
//
// Two variants share the value generators but not the templates or the name/place lists:
//   tune     what the detector was developed against
//   heldout  templates, names, streets and cities not looked at while tuning
//
//   deno run -A scripts/bench/pii_dataset.ts [--variant tune|heldout] [--count N] [--seed S]
// writes JSONL {"id","variant","genre","text","entities":[{"type","start","end"}]} to stdout.

import type { EntityType } from "../../router/pii/types.ts";
import { luhn } from "../../router/pii/validators.ts";

export interface GoldEntity {
  type: EntityType;
  start: number;
  end: number;
}
export interface Doc {
  id: string;
  variant: Variant;
  genre: string;
  text: string;
  entities: GoldEntity[];
}
export type Variant = "tune" | "heldout";

/** mulberry32: small, fast, seeded. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  constructor(readonly r: () => number, readonly names: NameSet) {}
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.r() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.r() * xs.length)];
  }
  digits(n: number): string {
    let s = "";
    for (let i = 0; i < n; i++) s += String(this.int(0, 9));
    return s;
  }
  chars(n: number, alphabet: string): string {
    let s = "";
    for (let i = 0; i < n; i++) s += alphabet[this.int(0, alphabet.length - 1)];
    return s;
  }
  pad(n: number, w: number): string {
    return String(n).padStart(w, "0");
  }
}

interface NameSet {
  first: readonly string[];
  last: readonly string[];
  streets: readonly string[];
  cities: readonly [string, string, string][]; // city, state, zip prefix
}

const TUNE_NAMES: NameSet = {
  first: [
    "Maria",
    "James",
    "Linda",
    "Robert",
    "Patricia",
    "Michael",
    "Jennifer",
    "David",
    "Elizabeth",
    "William",
    "Susan",
    "Richard",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Nancy",
    "Matthew",
    "Lisa",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Steven",
    "Ashley",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "George",
    "Melissa",
    "Edward",
    "Deborah",
    "Ronald",
    "Stephanie",
    "Timothy",
    "Rebecca",
    "Jason",
    "Laura",
    "Jeffrey",
    "Helen",
    "Ryan",
    "Wei",
    "Aisha",
    "Carlos",
    "Fatima",
    "Hiroshi",
    "Olga",
    "Rahul",
  ],
  last: [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Chen",
    "Patel",
    "Kowalski",
    "Okafor",
    "Yamamoto",
    "Novak",
  ],
  streets: [
    "Elm",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "Highland",
    "Lincoln",
    "Madison",
    "Jefferson",
    "River",
    "Church",
    "Spring",
    "Willow",
  ],
  cities: [
    ["Boston", "MA", "021"],
    ["Austin", "TX", "787"],
    ["Denver", "CO", "802"],
    ["Seattle", "WA", "981"],
    ["Chicago", "IL", "606"],
    ["Atlanta", "GA", "303"],
    ["Phoenix", "AZ", "850"],
    ["Portland", "OR", "972"],
    ["Nashville", "TN", "372"],
    ["Columbus", "OH", "432"],
    ["Baltimore", "MD", "212"],
    ["Sacramento", "CA", "958"],
  ],
};

const HELDOUT_NAMES: NameSet = {
  first: [
    "Dolores",
    "Ignatius",
    "Beatrix",
    "Cornelius",
    "Harriet",
    "Lucian",
    "Marguerite",
    "Desmond",
    "Rosalind",
    "Thaddeus",
    "Imogen",
    "Barnaby",
    "Winifred",
    "Percival",
    "Ottilie",
    "Ezekiel",
    "Priya",
    "Tariq",
    "Ngozi",
    "Bjorn",
    "Saoirse",
    "Mateo",
    "Yusuf",
    "Ingrid",
    "Kenji",
    "Leilani",
    "Anneliese",
    "Rafferty",
    "Catalina",
    "Dmitri",
  ],
  last: [
    "Whitfield",
    "Ashworth",
    "Pemberton",
    "Castellanos",
    "Oyelaran",
    "Lindqvist",
    "Fairbanks",
    "Marchetti",
    "Abernathy",
    "Vasquez-Ortiz",
    "Holloway",
    "Brightwater",
    "Sutherland",
    "Kaminski",
    "Delacroix",
    "Mbeki",
    "Thorsen",
    "Quintero",
    "Hargrove",
    "Blackwood",
    "Nakamura",
    "Oduya",
    "Petrakis",
    "Villanueva",
    "Eriksen",
    "Zhao",
    "Montgomery",
    "Radcliffe",
  ],
  streets: [
    "Birchwood",
    "Juniper",
    "Hawthorne",
    "Magnolia",
    "Chestnut",
    "Briarcliff",
    "Foxglove",
    "Kingsley",
    "Larkspur",
    "Sycamore",
    "Wexford",
    "Alder",
  ],
  cities: [
    ["Tucson", "AZ", "857"],
    ["Omaha", "NE", "681"],
    ["Raleigh", "NC", "276"],
    ["Spokane", "WA", "992"],
    ["Albuquerque", "NM", "871"],
    ["Savannah", "GA", "314"],
    ["Madison", "WI", "537"],
    ["Burlington", "VT", "054"],
    ["Boise", "ID", "837"],
    ["Providence", "RI", "029"],
  ],
};

// --------------------------------------------------------------------------------------------
// Value generators. Each returns the text; SLOTS says which entity type it is (null: negative).

const AREA_CODES = [212, 415, 617, 312, 713, 206, 303, 404, 503, 512, 602, 702, 718, 801, 919];
const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];
const SUFFIX = ["Street", "Avenue", "Road", "Lane", "Drive", "Court", "Boulevard", "St.", "Ave."];
const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX = "0123456789abcdef";

function person(g: Gen): string {
  return `${g.pick(g.names.first)} ${g.pick(g.names.last)}`;
}
function ssnParts(g: Gen): [string, string, string] {
  let area = g.int(1, 899);
  while (area === 666) area = g.int(1, 899);
  return [g.pad(area, 3), g.pad(g.int(1, 99), 2), g.pad(g.int(1, 9999), 4)];
}
function ssn(g: Gen): string {
  const p = ssnParts(g);
  return g.r() < 0.85 ? p.join("-") : p.join(" ");
}
function badSsn(g: Gen): string {
  const [, group, serial] = ssnParts(g);
  const kind = g.int(0, 3);
  if (kind === 0) return `000-${group}-${serial}`;
  if (kind === 1) return `666-${group}-${serial}`;
  if (kind === 2) {
    return `${g.int(900, 999)}-${g.pick(["00", "12", "40", "45", "69", "89", "93"])}-${serial}`;
  }
  return `${g.pad(g.int(1, 665), 3)}-00-${serial}`;
}
function itin(g: Gen): string {
  const groups = [50, 55, 62, 65, 70, 75, 78, 80, 84, 88, 90, 92, 94, 99];
  return `9${g.digits(2)}-${g.pick(groups)}-${g.pad(g.int(1, 9999), 4)}`;
}
function withCheckDigit(body: string): string {
  for (let d = 0; d < 10; d++) if (luhn(body + d)) return body + d;
  throw new Error("unreachable");
}
function cardDigits(g: Gen): string {
  const kind = g.int(0, 3);
  if (kind === 0) return withCheckDigit("4" + g.digits(14));
  if (kind === 1) return withCheckDigit(String(g.int(51, 55)) + g.digits(13));
  if (kind === 2) return withCheckDigit(g.pick(["34", "37"]) + g.digits(12));
  return withCheckDigit("6011" + g.digits(11));
}
function formatCard(g: Gen, d: string): string {
  const sep = g.pick([" ", "-", ""]);
  if (d.length === 15) return [d.slice(0, 4), d.slice(4, 10), d.slice(10)].join(sep);
  return d.match(/.{1,4}/g)!.join(sep);
}
function card(g: Gen): string {
  return formatCard(g, cardDigits(g));
}
function badCard(g: Gen): string {
  const d = cardDigits(g);
  const last = (Number(d[d.length - 1]) + g.int(1, 9)) % 10;
  return formatCard(g, d.slice(0, -1) + last);
}
const IBAN_SPECS: [string, number, string][] = [
  ["DE", 22, "n"],
  ["FR", 27, "n"],
  ["NL", 18, "b"],
  ["ES", 24, "n"],
  ["IT", 27, "i"],
  ["GB", 22, "b"],
  ["BE", 16, "n"],
  ["CH", 21, "n"],
];
function ibanMod(s: string): number {
  let rem = 0;
  for (const ch of s) {
    const v = ch >= "A" ? String(ch.charCodeAt(0) - 55) : ch;
    for (const c of v) rem = (rem * 10 + Number(c)) % 97;
  }
  return rem;
}
function ibanCompact(g: Gen, valid: boolean): string {
  const [cc, len, kind] = g.pick(IBAN_SPECS);
  let bban = kind === "b"
    ? g.chars(4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") + g.digits(len - 8)
    : kind === "i"
    ? g.chars(1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") + g.digits(len - 5)
    : g.digits(len - 4);
  bban = bban.slice(0, len - 4);
  let check = 98 - ibanMod(bban + cc + "00");
  if (!valid) check = (check + g.int(1, 50)) % 97 + 2;
  return cc + g.pad(check, 2) + bban;
}
function spaced(g: Gen, compact: string): string {
  return g.r() < 0.6 ? compact.match(/.{1,4}/g)!.join(" ") : compact;
}
function iban(g: Gen): string {
  return spaced(g, ibanCompact(g, true));
}
function badIban(g: Gen): string {
  return spaced(g, ibanCompact(g, false));
}
function phone(g: Gen): string {
  const a = g.pick(AREA_CODES), e = g.int(201, 989), x = g.digits(4);
  const ex = e === 555 ? 556 : e % 100 === 11 ? e + 1 : e;
  return g.pick([
    `(${a}) ${ex}-${x}`,
    `${a}-${ex}-${x}`,
    `+1 ${a} ${ex} ${x}`,
    `${a}.${ex}.${x}`,
    `+1-${a}-${ex}-${x}`,
  ]);
}
function intlPhone(g: Gen): string {
  return g.pick([
    `+44 20 7${g.digits(3)} ${g.digits(4)}`,
    `+49 30 ${g.digits(8)}`,
    `+33 1 ${g.digits(2)} ${g.digits(2)} ${g.digits(2)} ${g.digits(2)}`,
  ]);
}
function email(g: Gen): string {
  const f = g.pick(g.names.first).toLowerCase(), l = g.pick(g.names.last).toLowerCase();
  const user = g.pick([`${f}.${l}`, `${f[0]}${l}`, `${f}${g.int(1, 99)}`, `${l}.${f}`]);
  return `${user.replace(/[^a-z0-9.]/g, "")}@${
    g.pick([
      "gmail.com",
      "outlook.com",
      "example.org",
      "mercyhealth.org",
      "acme-bank.com",
      "yahoo.com",
    ])
  }`;
}
function ipv4(g: Gen): string {
  return `${g.pick([10, 172, 192, 34, 52, 81, 203, 98])}.${g.int(0, 255)}.${g.int(0, 255)}.${
    g.int(1, 254)
  }`;
}
function ipv6(g: Gen): string {
  const grp = () => g.int(0, 0xffff).toString(16);
  if (g.r() < 0.5) return `2001:db8:${grp()}:${grp()}::${grp()}`;
  return Array.from({ length: 8 }, grp).join(":");
}
function ip(g: Gen): string {
  return g.r() < 0.75 ? ipv4(g) : ipv6(g);
}
function url(g: Gen): string {
  const host = g.pick([
    "portal.mercyhealth.org",
    "www.acme-bank.com",
    "app.example.com",
    "intranet.stmarys.org",
    "github.com",
  ]);
  const path = g.pick([
    `/patients/${g.digits(6)}`,
    `/account/${g.digits(8)}/statements`,
    `/u/${g.pick(g.names.last).toLowerCase()}`,
    `/tickets/${g.digits(5)}?ref=email`,
    `/records/view?id=${g.digits(7)}`,
  ]);
  return `https://${host}${path}`;
}
function date(g: Gen): string {
  const y = g.int(1930, 2024), m = g.int(1, 12), d = g.int(1, 28);
  return g.pick([
    `${g.pad(m, 2)}/${g.pad(d, 2)}/${y}`,
    `${m}/${d}/${y}`,
    `${y}-${g.pad(m, 2)}-${g.pad(d, 2)}`,
    `${MONTHS[m - 1]} ${d}, ${y}`,
    `${d} ${MONTHS[m - 1]} ${y}`,
    `${MONTHS[m - 1].slice(0, 3)} ${d}, ${y}`,
  ]);
}
function street(g: Gen): string {
  return `${g.int(1, 9899)} ${g.pick(g.names.streets)} ${g.pick(SUFFIX)}`;
}
function address(g: Gen): string {
  const [city, st, zip] = g.pick(g.names.cities);
  return g.r() < 0.7
    ? `${street(g)}, ${city}, ${st} ${zip}${g.digits(2)}`
    : `${street(g)}, ${city}`;
}
function city(g: Gen): string {
  return g.pick(g.names.cities)[0];
}
function driverLicense(g: Gen): string {
  return g.pick([
    `${g.chars(1, "ABCDEFGHJKLMNPRSTWY")}${g.digits(7)}`,
    `${g.digits(9)}`,
    `${g.chars(1, "ABCDEFGHJKLMNPRSTWY")}${g.digits(12)}`,
    `${g.chars(1, "ABCDEFGHJKLMNPRSTWY")}${g.digits(3)}-${g.digits(3)}-${g.digits(2)}-${
      g.digits(3)
    }`,
  ]);
}
function passport(g: Gen): string {
  return g.r() < 0.6 ? g.digits(9) : `${g.chars(1, "ACEFGHJKLMNPRSTUVWXYZ")}${g.digits(8)}`;
}
function bankAccount(g: Gen): string {
  return g.digits(g.int(8, 14));
}
function routing(g: Gen): string {
  const body = g.digits(8);
  const w = [3, 7, 1, 3, 7, 1, 3, 7];
  let s = 0;
  for (let i = 0; i < 8; i++) s += w[i] * Number(body[i]);
  return body + String((10 - (s % 10)) % 10);
}
function mrn(g: Gen): string {
  return g.pick([
    `${g.digits(8)}`,
    `MR${g.digits(7)}`,
    `${g.digits(3)}-${g.digits(2)}-${g.digits(3)}`,
    `E${g.digits(9)}`,
  ]);
}
function npiOf(g: Gen, valid: boolean): string {
  const body = g.pick(["1", "2"]) + g.digits(8);
  for (let d = 0; d < 10; d++) {
    if (luhn("80840" + body + d) === valid) return body + d;
  }
  throw new Error("unreachable");
}
const npi = (g: Gen) => npiOf(g, true);
const badNpi = (g: Gen) => npiOf(g, false);
function deaOf(g: Gen, valid: boolean): string {
  const letters = g.chars(1, "ABFGMPR") + g.chars(1, "ABCDEFGHJKLMNPRSTWZ");
  const d = g.digits(6).split("").map(Number);
  const check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10;
  const last = valid ? check : (check + g.int(1, 9)) % 10;
  return letters + d.join("") + last;
}
const dea = (g: Gen) => deaOf(g, true);
const badDea = (g: Gen) => deaOf(g, false);
function medicalLicense(g: Gen): string {
  return g.pick([
    `MD${g.digits(6)}`,
    `${g.chars(1, "ACGL")}${g.digits(5)}`,
    `${g.digits(2)}-${g.digits(6)}`,
    `DO${g.digits(5)}`,
  ]);
}
function mbi(g: Gen): string {
  const L = "ACDEFGHJKMNPQRTUVWXY", N = "0123456789", A = L + N;
  return g.chars(1, "123456789") + g.chars(1, L) + g.chars(1, A) + g.chars(1, N) + g.chars(1, L) +
    g.chars(1, A) + g.chars(1, N) + g.chars(1, L) + g.chars(1, L) + g.chars(1, N) + g.chars(1, N);
}
function healthPlanId(g: Gen): string {
  return g.r() < 0.4 ? mbi(g) : g.pick([
    `${g.chars(3, "ABCDEFGHJKMNPRSTUVWXYZ")}${g.digits(9)}`,
    `W${g.digits(9)}`,
    `${g.chars(2, "ABCHKMUX")}${g.digits(8)}`,
  ]);
}
function secret(g: Gen): string {
  return g.pick([
    () => `sk-proj-${g.chars(48, B32 + "_-")}`,
    () => `sk-${g.chars(48, B32)}`,
    () => `sk-ant-api03-${g.chars(93, B32 + "_-")}AA`,
    () => `ghp_${g.chars(36, B32)}`,
    () => `github_pat_${g.chars(22, B32)}_${g.chars(59, B32)}`,
    () => `xoxb-${g.digits(12)}-${g.digits(13)}-${g.chars(24, B32)}`,
    () => `AKIA${g.chars(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")}`,
    () => `AIza${g.chars(35, B32 + "_-")}`,
    () => `hf_${g.chars(34, B32)}`,
    () => `nvapi-${g.chars(64, B32 + "_-")}`,
    () => `glpat-${g.chars(20, B32 + "_-")}`,
    () => jwt(g),
  ])();
}
function b64url(g: Gen, n: number): string {
  return g.chars(n, B32 + "_-");
}
function jwt(g: Gen): string {
  const header = btoa(JSON.stringify({ alg: "HS256", typ: "JWT" })).replace(/=+$/, "");
  const payload = btoa(JSON.stringify({ sub: g.digits(8), iat: g.int(1.6e9, 1.8e9) }))
    .replace(/=+$/, "");
  return `${header}.${payload}.${b64url(g, 43)}`;
}
function genericSecret(g: Gen): string {
  return g.chars(g.int(32, 48), B32);
}
function pem(g: Gen): string {
  const lines = Array.from({ length: 4 }, () => g.chars(64, B32 + "+/"));
  return `-----BEGIN RSA PRIVATE KEY-----\n${lines.join("\n")}\n-----END RSA PRIVATE KEY-----`;
}
// Hard negatives.
function orderNo(g: Gen): string {
  return g.pick([
    `ORD-${g.int(2019, 2025)}-${g.digits(6)}`,
    `#${g.digits(3)}-${g.digits(2)}-${g.digits(5)}`,
    `PO ${g.digits(7)}`,
    `A-${g.digits(5)}-${g.digits(2)}`,
  ]);
}
function version(g: Gen): string {
  return g.pick([
    `v${g.int(0, 9)}.${g.int(0, 30)}.${g.int(0, 99)}`,
    `${g.int(1, 12)}.${g.int(0, 9)}.${g.int(0, 9)}.${g.int(0, 9999)}`,
    `${g.int(1, 3)}.${g.int(0, 20)}.${g.int(0, 9)}-rc${g.int(1, 5)}`,
  ]);
}
function commitSha(g: Gen): string {
  return g.chars(40, HEX);
}
function uuid(g: Gen): string {
  return `${g.chars(8, HEX)}-${g.chars(4, HEX)}-4${g.chars(3, HEX)}-a${g.chars(3, HEX)}-${
    g.chars(12, HEX)
  }`;
}
function ticket(g: Gen): string {
  return g.pick([`INC${g.digits(7)}`, `JIRA-${g.int(100, 9999)}`, `CASE-${g.digits(6)}`]);
}
function amount(g: Gen): string {
  return `$${g.int(1, 99)},${g.digits(3)}.${g.digits(2)}`;
}

type SlotGen = (g: Gen) => string;
const SLOTS: Record<string, [EntityType | null, SlotGen]> = {
  PERSON: ["PERSON", person],
  FIRST: ["PERSON", (g) => g.pick(g.names.first)],
  EMAIL: ["EMAIL_ADDRESS", email],
  PHONE: ["PHONE_NUMBER", phone],
  INTL_PHONE: ["PHONE_NUMBER", intlPhone],
  SSN: ["US_SSN", ssn],
  ITIN: ["US_ITIN", itin],
  CARD: ["CREDIT_CARD", card],
  IBAN: ["IBAN_CODE", iban],
  IP: ["IP_ADDRESS", ip],
  URL: ["URL", url],
  DATE: ["DATE_TIME", date],
  ADDRESS: ["LOCATION", address],
  CITY: ["LOCATION", city],
  DL: ["US_DRIVER_LICENSE", driverLicense],
  PASSPORT: ["US_PASSPORT", passport],
  BANK: ["US_BANK_NUMBER", bankAccount],
  MRN: ["MEDICAL_RECORD_NUMBER", mrn],
  NPI: ["US_NPI", npi],
  DEA: ["US_DEA", dea],
  MEDLIC: ["MEDICAL_LICENSE", medicalLicense],
  PLAN: ["HEALTH_PLAN_ID", healthPlanId],
  SECRET: ["SECRET", secret],
  GENERIC_SECRET: ["SECRET", genericSecret],
  PEM: ["SECRET", pem],
  // Negatives: present in the text, labelled as nothing.
  BAD_SSN: [null, badSsn],
  BAD_CARD: [null, badCard],
  BAD_IBAN: [null, badIban],
  BAD_NPI: [null, badNpi],
  BAD_DEA: [null, badDea],
  ROUTING: [null, routing],
  ORDER: [null, orderNo],
  VERSION: [null, version],
  SHA: [null, commitSha],
  UUID: [null, uuid],
  TICKET: [null, ticket],
  AMOUNT: [null, amount],
  INT: [null, (g) => String(g.int(2, 950))],
};

// --------------------------------------------------------------------------------------------
// Templates. {SLOT} is filled from SLOTS; {SLOT:k} reuses the k-th value of that slot.

const TUNE_TEMPLATES: Record<string, readonly string[]> = {
  clinical: [
    "Patient: {PERSON}\nDOB: {DATE}\nMRN: {MRN}\nSSN: {SSN}\nAddress: {ADDRESS}\nPhone: {PHONE}\n\nChief complaint: chest pain for {INT} days. Seen by Dr. {PERSON} (NPI {NPI}). Follow up on {DATE}.",
    "{PERSON}, a {INT}-year-old patient, was admitted on {DATE}. Medical record number {MRN}. Insurance member ID {PLAN}. Prescribed by Dr. {PERSON}, DEA {DEA}, medical license {MEDLIC}.",
    "Discharge summary for {PERSON} (MRN {MRN}). Emergency contact: {PERSON}, phone {PHONE}. Patient lives at {ADDRESS}. Lab order {ORDER} was processed; device firmware {VERSION}.",
    "Referral: Dr. {PERSON} (NPI {NPI}) refers patient {PERSON}, born {DATE}, Medicare ID {PLAN}. Note: old NPI {BAD_NPI} on file is invalid. Lab accession {ORDER}.",
    "Pharmacy note: prescriber DEA number {DEA} verified; rejected DEA {BAD_DEA} (checksum failed). Patient {PERSON}, health plan ID {PLAN}, callback {PHONE}.",
  ],
  ticket: [
    "Ticket {TICKET}: customer {PERSON} ({EMAIL}) reports a failed payment with card {CARD}. Billing address: {ADDRESS}. Order {ORDER}, amount {AMOUNT}.",
    "Hi support, my name is {PERSON}. I was charged twice on {DATE}. My account number is {BANK} (routing {ROUTING}). You can reach me at {PHONE} or {EMAIL}.",
    "Case {TICKET}. Identity check: SSN {SSN}, driver's license {DL}, passport number {PASSPORT}. Customer {PERSON} called from {PHONE}; login from IP {IP}.",
    "Refund request for order {ORDER}. The card ending test number {BAD_CARD} was rejected. Customer {PERSON} wants the refund to IBAN {IBAN}. Invalid IBAN {BAD_IBAN} from the form was ignored.",
    "Tax form issue: taxpayer {PERSON}, ITIN {ITIN}. The number {BAD_SSN} on the old form is not a valid SSN. Contact {EMAIL}.",
  ],
  email: [
    "Dear {PERSON},\n\nThank you for your call on {DATE}. As discussed, we updated your mailing address to {ADDRESS}. If anything is wrong, call us at {PHONE}.\n\nBest regards,\n{PERSON}",
    "Hi {FIRST},\n\nPlease wire the deposit to IBAN {IBAN} before {DATE}. My cell is {INTL_PHONE}. The portal link is {URL}.\n\nThanks,\n{PERSON}",
    "From: {EMAIL}\nTo: {EMAIL}\nSubject: appointment\n\n{PERSON} will meet you in {CITY} on {DATE}. Reference {TICKET}, release {VERSION}.",
  ],
  code: [
    '# config.py\nOPENAI_API_KEY = "{SECRET}"\nDB_HOST = "{IP}"\n# build {VERSION}, commit {SHA}\nREQUEST_ID = "{UUID}"',
    'export GITHUB_TOKEN={SECRET}\ncurl -H "Authorization: Bearer {SECRET}" {URL}\n# owner: {EMAIL}',
    'const config = {\n  apiSecret: "{GENERIC_SECRET}",\n  region: "us-east-1",\n  version: "{VERSION}",\n  traceId: "{UUID}",\n};',
    "$ cat id_rsa\n{PEM}\n# deployed by {PERSON} from {IP} at commit {SHA}",
  ],
};

const HELDOUT_TEMPLATES: Record<string, readonly string[]> = {
  clinical: [
    "Progress note. {PERSON} presented with shortness of breath. Date of birth {DATE}; chart # {MRN}. Attending physician {PERSON}, NPI {NPI}. Social security number {SSN}. Home: {ADDRESS}. Reach the family at {PHONE}.",
    "Rx: amoxicillin {INT} mg. Prescriber {PERSON} (DEA reg. {DEA}, state license no. {MEDLIC}). Subscriber ID {PLAN}. Formulary version {VERSION}; batch {ORDER}.",
  ],
  ticket: [
    "Escalation {TICKET} opened by {PERSON}. Customer says the charge on {CARD} is unknown. Verify with social {SSN} and DL number {DL}. Callback {PHONE}, email {EMAIL}. Old form value {BAD_SSN} ignored.",
    "Wire transfer dispute: beneficiary {PERSON}, IBAN {IBAN}, acct no. {BANK}. Form had {BAD_IBAN} and card {BAD_CARD}, both invalid. Session from {IP} on {DATE}.",
  ],
  email: [
    "Hello {FIRST},\n\nyour passport ({PASSPORT}) has been scanned and the visa appointment in {CITY} is confirmed for {DATE}. Questions: {EMAIL} or {INTL_PHONE}.\n\nKind regards, {PERSON}",
    "Good morning {PERSON}, the documents for your ITIN {ITIN} application were mailed to {ADDRESS}. Track them at {URL}. Order {ORDER}, total {AMOUNT}.",
  ],
  code: [
    "env:\n  ANTHROPIC_API_KEY: {SECRET}\n  HF_TOKEN: {SECRET}\n  SERVICE_ADDR: {IP}\n  IMAGE_TAG: {VERSION}\n  GIT_SHA: {SHA}",
    "# deploy.sh by {EMAIL}\nexport AUTH_TOKEN='{GENERIC_SECRET}'\nssh deploy@{IP} 'systemctl restart api' # run {UUID}",
  ],
};

function fill(template: string, g: Gen): { text: string; entities: GoldEntity[] } {
  let text = "";
  const entities: GoldEntity[] = [];
  const re = /\{([A-Z_]+)\}/g;
  let last = 0;
  for (const m of template.matchAll(re)) {
    text += template.slice(last, m.index);
    const [type, gen] = SLOTS[m[1]] ?? (() => {
      throw new Error(`unknown slot ${m[1]}`);
    })();
    const value = gen(g);
    if (type) entities.push({ type, start: text.length, end: text.length + value.length });
    text += value;
    last = m.index! + m[0].length;
  }
  text += template.slice(last);
  return { text, entities };
}

/** The evaluation set: `count` documents, deterministic for a seed and variant. */
export function generate(
  { seed = 5, count = 2400, variant = "tune" as Variant } = {},
): Doc[] {
  const g = new Gen(
    rng(seed + (variant === "heldout" ? 1_000_003 : 0)),
    variant === "tune" ? TUNE_NAMES : HELDOUT_NAMES,
  );
  const templates = variant === "tune" ? TUNE_TEMPLATES : HELDOUT_TEMPLATES;
  const genres = Object.keys(templates);
  const docs: Doc[] = [];
  for (let i = 0; i < count; i++) {
    const genre = genres[i % genres.length];
    const { text, entities } = fill(g.pick(templates[genre]), g);
    docs.push({ id: `${variant}-${i}`, variant, genre, text, entities });
  }
  return docs;
}

if (import.meta.main) {
  const args = Deno.args;
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const variant = (opt("--variant") ?? "tune") as Variant;
  if (variant !== "tune" && variant !== "heldout") {
    console.error("pii_dataset: --variant must be tune or heldout");
    Deno.exit(2);
  }
  const docs = generate({
    seed: Number(opt("--seed") ?? 5),
    count: Number(opt("--count") ?? 2400),
    variant,
  });
  const out = docs.map((d) => JSON.stringify(d)).join("\n") + "\n";
  await Deno.stdout.write(new TextEncoder().encode(out));
}
