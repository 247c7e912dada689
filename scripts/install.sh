#!/bin/sh
# clawcage installer: downloads (or takes offline) the clawcage binary for this machine,
# verifies it against SHA256SUMS (and SHA256SUMS.sig when a public key is configured),
# replaces the installed binary atomically, creates /etc/clawcage, /var/lib/clawcage and
# /var/log/clawcage, installs the systemd unit, runs `clawcage doctor` and says what to do next.
#
#   curl -fsSL https://HOST/clawcage/install.sh | sh -s -- --base-url https://HOST/clawcage
#   sh install.sh --from ./clawcage-linux-x86_64        (offline; SHA256SUMS next to it)
#   sh install.sh --uninstall [--purge]
#
# Re-running upgrades in place. A failed step leaves the previous binary installed and exits
# non-zero. POSIX sh; checked with shellcheck (tests/appliance/install_test.ts).

set -eu

BASE_URL=${CLAWCAGE_BASE_URL:-}
PUBKEY=${CLAWCAGE_PUBKEY:-}
FROM=
SUMS=
PREFIX=/usr/local/bin
ROOT=
ARCH=
MODE=install
PURGE=no
SYSTEMD=yes
DOCTOR=yes

say() { printf 'clawcage install: %s\n' "$*" >&2; }
die() {
	printf 'clawcage install: error: %s\n' "$*" >&2
	exit 1
}

usage() {
	cat <<'USAGE'
Usage: install.sh [options]

  --base-url URL   download clawcage-linux-ARCH and SHA256SUMS from URL
                   (default: $CLAWCAGE_BASE_URL)
  --from FILE      install FILE offline; SHA256SUMS is read next to it (or --sums)
  --sums FILE      the SHA256SUMS file to verify against (with --from)
  --pubkey FILE    PEM public key (Ed25519 or RSA): SHA256SUMS.sig must verify with it
                   (default: $CLAWCAGE_PUBKEY, else /etc/clawcage/release.pub if present)
  --prefix DIR     install the binary into DIR (default /usr/local/bin)
  --root DIR       install under DIR instead of / (image builds, tests); no systemctl
  --arch ARCH      x86_64 or aarch64 (default: this machine's)
  --no-systemd     do not run systemctl (the unit file is still installed)
  --no-doctor      do not run clawcage doctor
  --uninstall      remove the binary, the unit, /etc/clawcage and /var/lib/clawcage
  --purge          with --uninstall: remove /var/log/clawcage too
  -h, --help       show this help
USAGE
}

need_value() {
	[ "$#" -ge 2 ] || die "$1 needs a value (see --help)"
}

while [ "$#" -gt 0 ]; do
	case "$1" in
	--base-url) need_value "$@"; BASE_URL=$2; shift 2 ;;
	--base-url=*) BASE_URL=${1#*=}; shift ;;
	--from) need_value "$@"; FROM=$2; shift 2 ;;
	--from=*) FROM=${1#*=}; shift ;;
	--sums) need_value "$@"; SUMS=$2; shift 2 ;;
	--sums=*) SUMS=${1#*=}; shift ;;
	--pubkey) need_value "$@"; PUBKEY=$2; shift 2 ;;
	--pubkey=*) PUBKEY=${1#*=}; shift ;;
	--prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
	--prefix=*) PREFIX=${1#*=}; shift ;;
	--root) need_value "$@"; ROOT=$2; shift 2 ;;
	--root=*) ROOT=${1#*=}; shift ;;
	--arch) need_value "$@"; ARCH=$2; shift 2 ;;
	--arch=*) ARCH=${1#*=}; shift ;;
	--no-systemd) SYSTEMD=no; shift ;;
	--no-doctor) DOCTOR=no; shift ;;
	--uninstall) MODE=uninstall; shift ;;
	--purge) PURGE=yes; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
done

case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path" ;; esac
case "$ROOT" in "" | /*) ;; *) die "--root must be an absolute path" ;; esac
ROOT=${ROOT%/}
[ -n "$ROOT" ] && SYSTEMD=no

BIN_DIR=$ROOT$PREFIX
BIN=$BIN_DIR/clawcage
ETC=$ROOT/etc/clawcage
STATE=$ROOT/var/lib/clawcage
LOGS=$ROOT/var/log/clawcage
UNIT=$ROOT/etc/systemd/system/clawcage.service

# systemctl only on a running systemd, and never for --root installs.
use_systemctl() {
	[ "$SYSTEMD" = yes ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

if [ "$MODE" = uninstall ]; then
	if use_systemctl; then
		systemctl disable --now clawcage.service >/dev/null 2>&1 || true
	fi
	rm -f "$UNIT"
	if use_systemctl; then systemctl daemon-reload || true; fi
	rm -f "$BIN" "$BIN_DIR/.clawcage.previous"
	rm -rf "$ETC" "$STATE"
	say "removed $BIN, $UNIT, $ETC and $STATE"
	if [ "$PURGE" = yes ]; then
		rm -rf "$LOGS"
		say "removed $LOGS (--purge)"
	elif [ -d "$LOGS" ]; then
		say "kept the logs in $LOGS (--purge removes them)"
	fi
	exit 0
fi

if [ -z "$ARCH" ]; then
	machine=$(uname -m)
	case "$machine" in
	x86_64 | amd64) ARCH=x86_64 ;;
	aarch64 | arm64) ARCH=aarch64 ;;
	*) die "unsupported architecture $machine (clawcage is built for x86_64 and aarch64)" ;;
	esac
fi
case "$ARCH" in x86_64 | aarch64) ;; *) die "--arch must be x86_64 or aarch64" ;; esac
NAME=clawcage-linux-$ARCH

if [ -z "$PUBKEY" ] && [ -f "$ETC/release.pub" ]; then PUBKEY=$ETC/release.pub; fi
if [ -n "$PUBKEY" ] && [ ! -f "$PUBKEY" ]; then die "public key $PUBKEY not found"; fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/clawcage-install.XXXXXX") || die "cannot create a temporary directory"
NEW=$BIN_DIR/.clawcage.new.$$
REPLACED=no
HAD_PREVIOUS=no
RESTARTED=no

on_exit() {
	status=$1
	rm -rf "$TMP"
	rm -f "$NEW"
	if [ "$status" -ne 0 ] && [ "$REPLACED" = yes ]; then
		if [ "$HAD_PREVIOUS" = yes ]; then
			mv -f "$BIN_DIR/.clawcage.previous" "$BIN" && say "restored the previous $BIN"
			if [ "$RESTARTED" = yes ] && systemctl restart clawcage.service; then
				say "restarted clawcage.service on the previous binary"
			fi
		else
			rm -f "$BIN" && say "removed the new $BIN"
		fi
	fi
	rm -f "$BIN_DIR/.clawcage.previous"
	exit "$status"
}
trap 'on_exit $?' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fetch() { # URL DEST
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1"
	else
		die "neither curl nor wget is installed (or use --from FILE)"
	fi
}

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d ' ' -f 1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | cut -d ' ' -f 1
	else
		openssl dgst -sha256 -r "$1" | cut -d ' ' -f 1
	fi
}

# 1. The binary and its checksums.
if [ -n "$FROM" ]; then
	[ -f "$FROM" ] || die "$FROM not found"
	[ -n "$SUMS" ] || SUMS=$(dirname "$FROM")/SHA256SUMS
	[ -f "$SUMS" ] || die "$SUMS not found: copy SHA256SUMS next to the binary, or give --sums FILE"
	cp "$FROM" "$TMP/clawcage"
	cp "$SUMS" "$TMP/SHA256SUMS"
	if [ -n "$PUBKEY" ]; then
		[ -f "$SUMS.sig" ] || die "$SUMS.sig not found, and a public key is configured ($PUBKEY)"
		cp "$SUMS.sig" "$TMP/SHA256SUMS.sig"
	fi
	say "installing $FROM (offline)"
else
	[ -n "$BASE_URL" ] || die "give --base-url URL (or set CLAWCAGE_BASE_URL), or --from FILE"
	BASE_URL=${BASE_URL%/}
	case "$BASE_URL" in
	https://*) ;;
	http://*)
		[ -n "$PUBKEY" ] || say "warning: $BASE_URL is plain http and no public key is configured: the checksum only detects corruption, not tampering"
		;;
	*) die "--base-url must start with https:// or http://" ;;
	esac
	say "downloading $BASE_URL/$NAME"
	fetch "$BASE_URL/$NAME" "$TMP/clawcage" || die "download of $BASE_URL/$NAME failed"
	fetch "$BASE_URL/SHA256SUMS" "$TMP/SHA256SUMS" || die "download of $BASE_URL/SHA256SUMS failed"
	if [ -n "$PUBKEY" ]; then
		fetch "$BASE_URL/SHA256SUMS.sig" "$TMP/SHA256SUMS.sig" ||
			die "download of $BASE_URL/SHA256SUMS.sig failed, and a public key is configured ($PUBKEY)"
	fi
fi

# 2. Signature (of SHA256SUMS, which names the binary's hash).
if [ -n "$PUBKEY" ]; then
	command -v openssl >/dev/null 2>&1 || die "openssl is needed to check the signature"
	if openssl pkey -pubin -in "$PUBKEY" -noout -text 2>/dev/null | grep -q 'ED25519'; then
		verified=$(openssl pkeyutl -verify -pubin -inkey "$PUBKEY" -rawin \
			-in "$TMP/SHA256SUMS" -sigfile "$TMP/SHA256SUMS.sig" 2>&1) || true
	else
		verified=$(openssl dgst -sha256 -verify "$PUBKEY" -signature "$TMP/SHA256SUMS.sig" \
			"$TMP/SHA256SUMS" 2>&1) || true
	fi
	case "$verified" in
	*"Signature Verified Successfully"* | "Verified OK"*) say "signature of SHA256SUMS verified with $PUBKEY" ;;
	*) die "the signature of SHA256SUMS does not verify with $PUBKEY: refusing to install" ;;
	esac
fi

# 3. Checksum.
expected=$(awk -v n="$NAME" '$2 == n || $2 == "*" n { print $1; exit }' "$TMP/SHA256SUMS")
[ -n "$expected" ] || die "SHA256SUMS has no entry for $NAME"
actual=$(sha256 "$TMP/clawcage")
[ "$expected" = "$actual" ] ||
	die "checksum mismatch for $NAME: expected $expected, got $actual: refusing to install"
say "sha256 $actual verified"

# 4. The new binary must run here before it replaces anything (next to the target: /tmp may be
#    noexec).
mkdir -p "$BIN_DIR"
cp "$TMP/clawcage" "$NEW"
chmod 0755 "$NEW"
info=$("$NEW" version --json 2>&1) || die "the new binary does not run on this machine: $info"
VERSION=$(printf '%s' "$info" | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
[ -n "$VERSION" ] || die "the new binary printed no version: $info"
if [ -x "$BIN" ]; then
	OLD=$("$BIN" version 2>/dev/null || echo "an unknown version")
	say "upgrading $BIN ($OLD) to $VERSION"
	cp -p "$BIN" "$BIN_DIR/.clawcage.previous"
	HAD_PREVIOUS=yes
else
	say "installing clawcage $VERSION to $BIN"
fi

# 5. Atomic replace (rename in the same directory).
mv -f "$NEW" "$BIN"
REPLACED=yes

# 6. Configuration, state and log directories; existing files are never overwritten.
mkdir -p "$ETC" "$ETC/credentials" "$STATE" "$LOGS"
chmod 0755 "$ETC"
chmod 0700 "$ETC/credentials" "$STATE"
chmod 0750 "$LOGS"
if [ ! -e "$ETC/policy.yaml" ]; then
	"$BIN" __print default-policy >"$TMP/policy.yaml" || die "cannot get the default policy from $BIN"
	chmod 0644 "$TMP/policy.yaml"
	mv -f "$TMP/policy.yaml" "$ETC/policy.yaml"
	say "wrote the default policy to $ETC/policy.yaml"
fi
if [ ! -e "$ETC/router.yaml" ]; then
	# The privacy policy of the host router (commented; enabled by router: in clawcage.yaml).
	"$BIN" __print router-policy >"$TMP/router.yaml" || die "cannot get the router policy from $BIN"
	chmod 0644 "$TMP/router.yaml"
	mv -f "$TMP/router.yaml" "$ETC/router.yaml"
	say "wrote the host router's policy to $ETC/router.yaml (keys go in $ETC/credentials, mode 0600)"
fi
if [ ! -e "$ETC/clawcage.yaml" ]; then
	cat >"$TMP/clawcage.yaml" <<'YAML'
# clawcage service configuration: the agents `clawcage service` runs (systemd: clawcage.service).
# Reference: clawcage service --help, and docs/appliance.md. Apply changes: systemctl reload clawcage
version: 1
# audit_log: /var/log/clawcage/audit     # `clawcage status` counts its denials of the last hour
agents: {}
#  openclaw:
#    command: ["/usr/local/bin/openclaw", "gateway"]
#    policy: /etc/clawcage/policy.yaml
#    user: nobody
#    workdir: /var/lib/clawcage/openclaw
#    # Model calls: give the policy a privacy section; the agent then gets
#    # OPENAI_BASE_URL=http://inference.local/v1 (set automatically, served by its own sandbox).
#    # Keys its policy names (api_key_env, credentials' env) go to clawcage run, never the agent:
#    credentials: { OPENAI_API_KEY: openai-key }   # or the service's environment (EnvironmentFile=)
#    env: { LOG_LEVEL: info }                      # what the agent sees: never keys
# router:                                  # for clients on the host, outside sandboxes only
#   policy: /etc/clawcage/router.yaml      # a policy with a privacy section
#   listen: 127.0.0.1:8787
#   credentials: { OPENAI_API_KEY: openai-key }   # LoadCredential=openai-key:/etc/clawcage/credentials/openai-key
YAML
	chmod 0644 "$TMP/clawcage.yaml"
	mv -f "$TMP/clawcage.yaml" "$ETC/clawcage.yaml"
	say "wrote $ETC/clawcage.yaml (no agents yet)"
fi
if [ -n "$PUBKEY" ] && [ "$PUBKEY" != "$ETC/release.pub" ]; then
	cp "$PUBKEY" "$ETC/release.pub"
	chmod 0644 "$ETC/release.pub"
	say "pinned $ETC/release.pub: later upgrades must be signed with it"
fi
checked=$("$BIN" service --check --config "$ETC/clawcage.yaml" 2>&1) ||
	die "the new clawcage rejects $ETC/clawcage.yaml: $checked"

# 7. The systemd unit (the one embedded in the binary, pointing at this binary).
mkdir -p "$(dirname "$UNIT")"
"$BIN" __print systemd-unit >"$TMP/unit" || die "cannot get the systemd unit from $BIN"
sed "s|/usr/local/bin/clawcage|$PREFIX/clawcage|g" "$TMP/unit" >"$TMP/clawcage.service"
chmod 0644 "$TMP/clawcage.service"
mv -f "$TMP/clawcage.service" "$UNIT"
say "installed $UNIT"
if use_systemctl; then
	systemctl daemon-reload || die "systemctl daemon-reload failed"
	systemctl enable clawcage.service >/dev/null 2>&1 || die "systemctl enable clawcage failed"
	if systemctl is-active --quiet clawcage.service; then
		RESTARTED=yes
		systemctl restart clawcage.service || die "the upgraded service does not start: journalctl -u clawcage"
		# Type=simple: restart returns once started; a service that dies at once shows here.
		sleep 2
		systemctl is-active --quiet clawcage.service ||
			die "the upgraded service stopped after starting: journalctl -u clawcage"
		say "restarted clawcage.service"
	fi
else
	say "systemctl not used (--root, --no-systemd, or systemd is not running)"
fi

# The install is complete: from here on nothing rolls back.
rm -f "$BIN_DIR/.clawcage.previous"
HAD_PREVIOUS=no
REPLACED=no

if [ "$DOCTOR" = yes ]; then
	say "clawcage doctor:"
	"$BIN" doctor >&2 || say "warning: doctor reports missing host features (above): sandboxes may not start"
fi

cat >&2 <<NEXT

clawcage $VERSION is installed at $BIN.
Next steps:
  1. Describe your agents in $ETC/clawcage.yaml (and their policies, e.g. $ETC/policy.yaml).
  2. Cloud keys (agents reach models at http://inference.local): put each in
     $ETC/credentials/NAME (mode 0600), add LoadCredential=NAME:/etc/clawcage/credentials/NAME with:
     systemctl edit clawcage, and map it in clawcage.yaml (credentials: { VAR: NAME })
  3. Start it: systemctl enable --now clawcage      Status: clawcage status
  Try the sandbox now: clawcage run -- sh -c 'id; ls /'
NEXT
