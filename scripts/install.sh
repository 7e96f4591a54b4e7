#!/bin/sh
# Install smsgw on a Raspberry Pi (Debian / Raspberry Pi OS) from this source tree.
#
#   sudo scripts/install.sh            # install or upgrade; safe to run again
#   scripts/install.sh --dry-run       # print what it would do, change nothing
#
# It creates the smsgw system user (groups dialout and gpio), a venv under
# /opt/smsgw, /etc/smsgw/smsgw.toml from the example when there is none (an
# existing config is never touched), the systemd unit and the udev rules, and
# enables the service. A running service is restarted to pick up the new code.
# Paths can be moved for tests: SMSGW_PREFIX, SMSGW_ETC, SMSGW_UNIT_DIR,
# SMSGW_UDEV_DIR, SMSGW_STATE_DIR.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${SMSGW_PREFIX:-/opt/smsgw}
ETC=${SMSGW_ETC:-/etc/smsgw}
UNIT_DIR=${SMSGW_UNIT_DIR:-/etc/systemd/system}
UDEV_DIR=${SMSGW_UDEV_DIR:-/etc/udev/rules.d}
STATE_DIR=${SMSGW_STATE_DIR:-/var/lib/smsgw}
PYTHON=${PYTHON:-python3}
USER_NAME=smsgw
DRY_RUN=0

usage() {
    echo "usage: $0 [--dry-run]" >&2
    exit 2
}

for arg in "$@"; do
    case "$arg" in
        --dry-run|-n) DRY_RUN=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) usage ;;
    esac
done

# run CMD...: do it, or only print it on a dry run.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "would run: $*"
    else
        echo "+ $*"
        "$@"
    fi
}

say() { echo "== $*"; }

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo), or try --dry-run" >&2
    exit 1
fi
[ "$DRY_RUN" = 1 ] && say "dry run: nothing is changed"

say "user $USER_NAME in groups dialout and gpio"
for group in dialout gpio "$USER_NAME"; do
    if getent group "$group" >/dev/null; then
        echo "group $group exists"
    else
        run groupadd --system "$group"
    fi
done
if getent passwd "$USER_NAME" >/dev/null; then
    echo "user $USER_NAME exists"
else
    run useradd --system --gid "$USER_NAME" --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "smsgw SMS gateway" "$USER_NAME"
fi
run usermod --append --groups dialout,gpio "$USER_NAME"

say "venv in $PREFIX/venv"
if [ -x "$PREFIX/venv/bin/python" ]; then
    echo "venv exists"
else
    run mkdir -p "$PREFIX"
    run "$PYTHON" -m venv "$PREFIX/venv"
fi
run "$PREFIX/venv/bin/pip" install --quiet --upgrade "$SRC"

say "config in $ETC"
run install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
if [ -e "$ETC/smsgw.toml" ]; then
    echo "keeping the existing $ETC/smsgw.toml"
else
    run install -m 0640 -o root -g "$USER_NAME" "$SRC/systemd/smsgw.example.toml" \
        "$ETC/smsgw.toml"
fi
if [ ! -e "$ETC/mqtt-password" ]; then
    # LoadCredential= needs the file; an empty one means "no password".
    run install -m 0600 -o root -g root /dev/null "$ETC/mqtt-password"
fi

say "systemd unit and udev rules"
run install -m 0644 "$SRC/systemd/smsgw.service" "$UNIT_DIR/smsgw.service"
run install -m 0644 "$SRC/systemd/99-smsgw-modems.rules" "$UDEV_DIR/99-smsgw-modems.rules"
run udevadm control --reload
run udevadm trigger --subsystem-match=tty --action=change
run systemctl daemon-reload
run systemctl enable smsgw.service
run systemctl try-restart smsgw.service

say "done"
echo "next: edit $ETC/smsgw.toml, put the MQTT password in $ETC/mqtt-password,"
echo "      then: smsgw check-config --config $ETC/smsgw.toml && systemctl start smsgw"
echo "      technicians: usermod -aG $USER_NAME <name> lets them run 'smsgw status'"
