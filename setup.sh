#!/usr/bin/env bash
# Set up a Debian machine to build, run and test xdmvpn.
#
# Idempotent: every step first checks whether it is needed, so a second run
# prints nothing, does not call apt and takes a couple of seconds.
# Run `./setup.sh --help` for what it does.
set -euo pipefail

readonly PROG=setup.sh
readonly LOG=/tmp/xdmvpn-setup.log
readonly LOCK=/tmp/xdmvpn-setup.lock
readonly PY=/usr/bin/python3

usage() {
    cat <<'EOF'
Usage: sudo ./setup.sh [-h|--help]

Prepares this Debian machine for xdmvpn, doing only what is missing:
  1. checks: root, Debian-like system (apt-get, dpkg), kernel with BPF
     (BPF syscall, bpf filesystem; mounts /sys/fs/bpf if needed);
  2. installs the Debian packages it needs (bcc, kernel headers, iproute2,
     ethtool, tcpdump, tshark, strongSwan, nftables, iptables, python3-venv,
     pip; vagrant and vagrant-libvirt without their recommends, for `vagrant
     validate` of the lab's Vagrantfile; for the VM tier, without recommends
     and without starting any service: qemu-system-x86, busybox-static,
     file, FRR), calling apt only when some are missing; apt output goes to
     /tmp/xdmvpn-setup.log;
  3. if the running kernel has no headers (/lib/modules/$(uname -r)/build),
     links the newest Debian linux-headers package there, for bcc; installs
     the kernel image of that very version (linux-image-<version>, no
     initramfs: the VM tier boots it with its own), so that tests needing
     ip_gre, ESP or NFLOG can run in a VM (docs/vm.md);
  4. creates .venv (from /usr/bin/python3, with system site packages so
     that Debian's bcc is importable) and installs xdmvpn into it in
     editable mode with its test extras, again only when pyproject.toml
     changed; and virtme-ng (pinned), which boots that kernel;
  5. checks that `.venv/bin/python -c 'import bcc, xdmvpn'` works;
  6. with XDMVPN_SYSTEMD=1: installs the unit xdmvpn@.service (one node per
     /etc/xdmvpn/<instance>.toml; start with systemctl enable --now
     xdmvpn@dmvpn0), pointing at this checkout's .venv.

Then: .venv/bin/xdmvpn --help, or .venv/bin/python -m pytest -q
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

# Run a command with its output in $LOG (started afresh by the first such
# command of a run); on failure show the end of the log.
log_started=
logged() {
    local what=$1
    shift
    if [[ -z $log_started ]]; then
        : >"$LOG"
        log_started=1
    fi
    printf '\n=== %s: %s\n+ %s\n' "$(date '+%F %T')" "$what" "$*" >>"$LOG"
    local rc=0
    "$@" >>"$LOG" 2>&1 || rc=$?
    if ((rc != 0)); then
        printf '%s: error: %s failed (exit %d); last lines of %s:\n' \
            "$PROG" "$what" "$rc" "$LOG" >&2
        tail -n 25 "$LOG" >&2
        exit 1
    fi
}

for arg in "$@"; do
    case $arg in
        -h | --help) usage; exit 0 ;;
        *) printf '%s: error: unknown argument %q (see ./setup.sh --help)\n' \
            "$PROG" "$arg" >&2; exit 2 ;;
    esac
done

# --- 1. checks ---------------------------------------------------------------

[[ $(id -u) -eq 0 ]] || die "not running as root; run as root: sudo ./setup.sh"

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
readonly ROOT
cd "$ROOT"

if [[ ! -r /etc/debian_version ]] || ! command -v apt-get >/dev/null ||
    ! command -v dpkg-query >/dev/null; then
    die "not a Debian-like system (need /etc/debian_version, apt-get and dpkg); use Debian 12 or similar"
fi

KVER=$(uname -r)
readonly KVER
kconfig_has() {
    if [[ -r /proc/config.gz ]]; then
        zgrep -qx "$1=y" /proc/config.gz
    elif [[ -r /boot/config-$KVER ]]; then
        grep -qx "$1=y" "/boot/config-$KVER"
    else
        return 1
    fi
}
if [[ ! -e /sys/kernel/btf/vmlinux ]] && ! kconfig_has CONFIG_BPF_SYSCALL; then
    die "no BPF support in kernel $KVER: neither /sys/kernel/btf/vmlinux nor CONFIG_BPF_SYSCALL=y found; boot a kernel with CONFIG_BPF_SYSCALL=y and CONFIG_DEBUG_INFO_BTF=y"
fi
if ! mountpoint -q /sys/fs/bpf; then
    if [[ ! -d /sys/fs/bpf ]] || ! grep -qw bpf /proc/filesystems; then
        die "no bpf filesystem in kernel $KVER (/sys/fs/bpf missing or 'bpf' not in /proc/filesystems); boot a kernel with CONFIG_BPF_SYSCALL=y"
    fi
    mount -t bpf bpf /sys/fs/bpf 2>/dev/null ||
        die "cannot mount the bpf filesystem on /sys/fs/bpf; run: mount -t bpf bpf /sys/fs/bpf (in a container, give it CAP_SYS_ADMIN)"
    say "mounted the bpf filesystem on /sys/fs/bpf"
fi

# One set-up at a time on this machine (apt and the venv are shared state).
exec 9>"$LOCK"
flock -w 900 9 || die "another setup.sh has held $LOCK for 15 minutes; wait for it or remove the lock"

# --- 2. Debian packages ------------------------------------------------------

ARCH=$(dpkg --print-architecture)
readonly ARCH
PACKAGES=(
    bpfcc-tools python3-bpfcc "linux-headers-$ARCH"
    iproute2 iputils-ping ethtool tcpdump tshark
    strongswan-charon strongswan-swanctl charon-systemd
    nftables iptables
    python3-venv python3-pip
)
# Installed without their recommends: with them, vagrant-libvirt brings the libvirt daemon,
# QEMU and libguestfs (1.2 GB). `vagrant validate` needs none of them (tests/test_vagrant.py).
# The VM tier (docs/vm.md): QEMU, with busybox and file for virtme-ng, boots the stock
# kernel; FRR's zebra and nhrpd run inside it (no QEMU GUI, no FRR Python tools).
PACKAGES_NO_RECOMMENDS=(vagrant vagrant-libvirt qemu-system-x86 busybox-static file frr)

missing=() missing_nr=()
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' \
    "${PACKAGES[@]}" "${PACKAGES_NO_RECOMMENDS[@]}" 2>/dev/null || true)
for pkg in "${PACKAGES[@]}"; do
    grep -qx "$pkg ii *" <<<"$installed" || missing+=("$pkg")
done
for pkg in "${PACKAGES_NO_RECOMMENDS[@]}"; do
    grep -qx "$pkg ii *" <<<"$installed" || missing_nr+=("$pkg")
done
# Nothing installed here is started as a service (FRR's daemons run in the tests'
# namespaces only): while apt runs, a policy saying so, unless the machine has its own.
readonly POLICY=/usr/sbin/policy-rc.d
made_policy=
drop_policy() {
    [[ -z $made_policy ]] || rm -f "$POLICY"
    made_policy=
}
trap drop_policy EXIT

apt_updated=
apt_install() { # [--no-install-recommends] PACKAGE...
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z $apt_updated ]]; then
        echo 'wireshark-common wireshark-common/install-setuid boolean false' |
            debconf-set-selections
        logged "apt-get update" apt-get -o DPkg::Lock::Timeout=300 update
        apt_updated=1
    fi
    if [[ ! -e $POLICY ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
        made_policy=1
    fi
    logged "apt-get install $*" apt-get -y -o DPkg::Lock::Timeout=300 \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install "$@"
    drop_policy
}

if ((${#missing[@]} + ${#missing_nr[@]} > 0)); then
    say "installing $((${#missing[@]} + ${#missing_nr[@]})) Debian package(s):" \
        "${missing[*]}${missing[*]:+ }${missing_nr[*]} (log: $LOG)"
    if ((${#missing[@]} > 0)); then
        apt_install "${missing[@]}"
    fi
    if ((${#missing_nr[@]} > 0)); then
        apt_install --no-install-recommends "${missing_nr[@]}"
    fi
fi

# --- 3. kernel headers for bcc -----------------------------------------------
# Debian has no headers for a custom running kernel. bcc only needs them to
# compile programs; ours use UAPI structures only, so the newest Debian
# headers package does. An existing real headers directory is left alone.

ensure_kernel_headers() {
    local mod=/lib/modules/$KVER
    local build=$mod/build source=$mod/source
    [[ -d $build/include ]] && return 0

    local cands=() c hdr=
    shopt -s nullglob
    for c in /usr/src/linux-headers-*-"$ARCH"; do
        [[ -d $c/include ]] && cands+=("$c")
    done
    shopt -u nullglob
    ((${#cands[@]} > 0)) ||
        die "no kernel headers: $build missing and no /usr/src/linux-headers-*-$ARCH; run: apt-get install --reinstall linux-headers-$ARCH"
    hdr=$(printf '%s\n' "${cands[@]}" | sort -V | tail -n 1)

    mkdir -p "$mod"
    if [[ -e $build || -L $build ]] && [[ ! -L $build ]]; then
        # A real directory (or file) without include/: keep it, out of the way.
        local saved
        saved="$build.xdmvpn-saved.$(date +%s)"
        mv "$build" "$saved"
        say "moved $build (no include/) to $saved"
    fi
    ln -sfn "$hdr" "$build"

    local name=${hdr##*/} common=
    if [[ $name =~ ^(linux-headers-[0-9][^-]*-[0-9]+)- ]]; then
        common=/usr/src/${BASH_REMATCH[1]}-common
    fi
    if [[ -n $common && -d $common ]] && [[ -L $source || ! -e $source ]]; then
        ln -sfn "$common" "$source"
    fi
    say "kernel headers ${name#linux-headers-} linked as $build for running kernel $KVER (XDP/tc programs use only UAPI structures)"
}
ensure_kernel_headers

# The VM tier boots Debian's kernel of the headers' version (bcc inside finds matching
# headers): its image, without an initramfs (virtme-ng makes its own at each boot).
ensure_vm_kernel() {
    local hdr ver
    hdr=$(readlink -f "/lib/modules/$KVER/build")
    ver=${hdr##*/linux-headers-}
    if [[ ! $ver =~ ^[0-9]+\.[0-9]+\.[0-9]+-[0-9]+-$ARCH$ ]]; then
        # this machine's own headers: take the newest Debian ones
        ver=$(find /usr/src -maxdepth 1 -name "linux-headers-*-$ARCH" -printf '%f\n' |
            sed 's/^linux-headers-//' | sort -V | tail -n 1)
    fi
    [[ -n $ver ]] || die "no Debian kernel headers in /usr/src; run: apt-get install linux-headers-$ARCH"
    [[ -r /boot/vmlinuz-$ver ]] && return 0
    say "installing linux-image-$ver for the VM tier (log: $LOG)"
    INITRD=No apt_install --no-install-recommends "linux-image-$ver"
    [[ -r /boot/vmlinuz-$ver ]] || die "linux-image-$ver installed no /boot/vmlinuz-$ver"
}
ensure_vm_kernel

# --- 4. Python virtual environment -------------------------------------------

venv_ok() {
    [[ -x .venv/bin/python && -r .venv/pyvenv.cfg ]] &&
        [[ $(readlink -f .venv/bin/python) == "$(readlink -f "$PY")" ]] &&
        grep -qx 'include-system-site-packages = true' .venv/pyvenv.cfg
}

if ! venv_ok; then
    if [[ -e .venv ]]; then
        say "recreating .venv (not a $PY venv with system site packages)"
        rm -rf -- "$ROOT/.venv"
    else
        say "creating .venv from $PY"
    fi
    logged "python venv" "$PY" -m venv --system-site-packages .venv
fi

STAMP=.venv/.xdmvpn-setup-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [[ $want != "$have" || ! -x .venv/bin/xdmvpn ]]; then
    say "installing xdmvpn and its test extras into .venv (log: $LOG)"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    logged "pip install" .venv/bin/pip install -q -e '.[test]'
    printf '%s\n' "$want" >"$STAMP"
fi

# virtme-ng boots the VM tier's kernel; pinned: its options and guest side change often
readonly VIRTME_NG=1.42
shopt -s nullglob
vng_dist=(.venv/lib/python3*/site-packages/virtme_ng-"$VIRTME_NG".dist-info)
shopt -u nullglob
if ((${#vng_dist[@]} == 0)) || [[ ! -x .venv/bin/vng ]]; then
    say "installing virtme-ng $VIRTME_NG into .venv (log: $LOG)"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    logged "pip install virtme-ng" .venv/bin/pip install -q "virtme-ng==$VIRTME_NG"
fi

# --- 5. final check ----------------------------------------------------------

if ! err=$(cd / && "$ROOT/.venv/bin/python" -c 'import bcc, xdmvpn' 2>&1); then
    die ".venv/bin/python cannot import bcc and xdmvpn ($(tail -n 1 <<<"$err")); try: rm -rf .venv && ./setup.sh"
fi

# --- 6. systemd unit (asked for) ---------------------------------------------

if [[ ${XDMVPN_SYSTEMD:-0} == 1 ]]; then
    unit=/etc/systemd/system/xdmvpn@.service
    tmp=$(mktemp)
    sed -e "s|@VENV@|$ROOT/.venv|g" -e "s|@REPO@|$ROOT|g" \
        packaging/systemd/xdmvpn@.service >"$tmp"
    if ! cmp -s "$tmp" "$unit" 2>/dev/null; then
        install -m 0644 "$tmp" "$unit"
        mkdir -p /etc/xdmvpn
        say "installed $unit (configure /etc/xdmvpn/<instance>.toml, then systemctl enable --now xdmvpn@<instance>)"
        if [[ -d /run/systemd/system ]]; then
            systemctl daemon-reload
        fi
    fi
    rm -f "$tmp"
fi
