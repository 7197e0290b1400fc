#!/usr/bin/env bash
# Provision one VM of the Vagrant lab (../../Vagrantfile, docs/vagrant.md). As root, in the VM:
#
#   /opt/xdmvpn/packaging/vagrant/provision.sh NODE SPOKES IPSEC
#
#   1. runs the README set-up from the synced checkout: XDMVPN_SYSTEMD=1 ./setup.sh;
#   2. writes /etc/xdmvpn/dmvpn0.toml and /etc/xdmvpn/dmvpn0.routes with the lab's generator,
#      `xdmvpn lab config NODE --target vagrant --spokes SPOKES [--ipsec] [--routes]`
#      (IPSEC=1 adds the [ipsec] block);
#   3. IPv4 forwarding on; with IPSEC=1, esp4 loaded (now and at boot) and strongSwan running;
#   4. enables and starts xdmvpn@dmvpn0 (restarts it when its configuration changed) and
#      xdmvpn-lab-routes.service, which adds the routes once the daemon has made dmvpn0.
#
# Running it again changes only what differs. `provision.sh --files-only DIR NODE SPOKES IPSEC`
# does step 2 alone, into DIR (tests/test_vagrant.py compares the files with the generator).
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
XDMVPN=$REPO/.venv/bin/xdmvpn
ETC=/etc/xdmvpn
UNDERLAY_IF=eth1

die() { printf 'provision.sh: error: %s\n' "$*" >&2; exit 1; }

files_only=0
if [[ ${1:-} == --files-only ]]; then
    [[ $# -ge 2 ]] || die "--files-only needs a directory"
    files_only=1 ETC=$2
    shift 2
fi
[[ $# -eq 3 && $3 =~ ^[01]$ ]] || die "usage: provision.sh [--files-only DIR] NODE SPOKES IPSEC(0|1)"
node=$1 spokes=$2 ipsec=$3
gen=(lab config "$node" --target vagrant --spokes "$spokes")
if [[ $ipsec == 1 ]]; then
    gen+=(--ipsec)
fi

# install_file DEST MODE CMD...: CMD's output becomes DEST; false when DEST was already that.
install_file() {
    local dest=$1 mode=$2 tmp
    shift 2
    tmp=$(mktemp "$dest.XXXXXX")
    "$@" >"$tmp" || { rm -f "$tmp"; die "$* failed"; }
    chmod "$mode" "$tmp"
    if cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        return 1
    fi
    mv "$tmp" "$dest"
}

# --- 1. the README set-up, with the systemd unit ----------------------------------------
if ((!files_only)); then
    (cd "$REPO" && XDMVPN_SYSTEMD=1 ./setup.sh)
    ln -sfn "$XDMVPN" /usr/local/bin/xdmvpn
    want=$("$XDMVPN" lab config "$node" --target vagrant --spokes "$spokes" |
        sed -n 's/^source-address = "\(.*\)"$/\1/p')
    ip -4 -o addr show dev "$UNDERLAY_IF" 2>/dev/null | grep -qF " inet $want/" ||
        die "$UNDERLAY_IF does not have the underlay address $want (is it the first private network?)"
fi

# --- 2. configuration and routes, from the generator ------------------------------------
mkdir -p "$ETC"
config_changed=0 routes_changed=0
install_file "$ETC/dmvpn0.toml" 0600 "$XDMVPN" "${gen[@]}" && config_changed=1
install_file "$ETC/dmvpn0.routes" 0644 "$XDMVPN" "${gen[@]}" --routes && routes_changed=1
((files_only)) && exit 0

# --- 3. forwarding, IPsec ----------------------------------------------------------------
install_file /etc/sysctl.d/60-xdmvpn-lab.conf 0644 echo "net.ipv4.ip_forward = 1" &&
    sysctl -q -p /etc/sysctl.d/60-xdmvpn-lab.conf
if [[ $ipsec == 1 ]]; then
    install_file /etc/modules-load.d/xdmvpn-ipsec.conf 0644 echo esp4 || true
    modprobe esp4
    systemctl enable --now strongswan.service
else
    rm -f /etc/modules-load.d/xdmvpn-ipsec.conf
fi

# --- 4. the daemon and the routes --------------------------------------------------------
# The routes go on dmvpn0, which the daemon makes: wait (60 s at most) for its address.
routes_unit() {
    cat <<'EOF'
# Written by packaging/vagrant/provision.sh: the lab's routes (xdmvpn lab config NODE --routes)
[Unit]
Description=xdmvpn lab: the plan's routes on dmvpn0 (/etc/xdmvpn/dmvpn0.routes)
After=xdmvpn@dmvpn0.service
PartOf=xdmvpn@dmvpn0.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -ec 'for i in $$(seq 60); do ip -4 -o addr show dev dmvpn0 up | grep -q inet && break; sleep 1; done; while read -r r; do ip route replace $$r; done </etc/xdmvpn/dmvpn0.routes'

[Install]
WantedBy=xdmvpn@dmvpn0.service
EOF
}
if install_file /etc/systemd/system/xdmvpn-lab-routes.service 0644 routes_unit; then
    systemctl daemon-reload
    routes_changed=1
fi
systemctl enable --quiet xdmvpn-lab-routes.service xdmvpn@dmvpn0.service
if ((config_changed)) && systemctl is-active --quiet xdmvpn@dmvpn0; then
    systemctl restart xdmvpn@dmvpn0        # the routes unit follows (PartOf)
elif ((routes_changed)) && systemctl is-active --quiet xdmvpn@dmvpn0; then
    systemctl restart xdmvpn-lab-routes
else
    systemctl start xdmvpn@dmvpn0 xdmvpn-lab-routes
fi

for _ in $(seq 30); do
    xdmvpn show nhs >/dev/null 2>&1 && break
    sleep 1
done
with=""
if [[ $ipsec == 1 ]]; then
    with=" with [ipsec]"
fi
echo "provision.sh: $node: xdmvpn@dmvpn0 is $(systemctl is-active xdmvpn@dmvpn0)," \
    "configured by $ETC/dmvpn0.toml$with"
xdmvpn show dmvpn || true
