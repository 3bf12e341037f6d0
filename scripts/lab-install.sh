# shellcheck shell=bash
# Installing for the Vagrant lab: sourced by scripts/lab-target and scripts/lab-initiator
# (after scripts/lab.env). Each step does nothing when its work is already done.

# lab_apt PACKAGE... : apt-get install the packages that are not installed
lab_apt() {
    local p st missing=()
    for p in "$@"; do
        st="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
        [ "$st" = installed ] || missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    echo "lab: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 -q -y update >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 -q -y install --no-install-recommends "${missing[@]}"
}

# lab_venv SRC : lio-xcopy from the source tree SRC into $LAB_VENV, linked as
# /usr/local/bin/lio-xcopy, with its units, man pages and completion: the target host
# install an administrator runs (SRC/scripts/install; it does nothing when up to date
# and restarts a running lio-xcopy.service when the package changed)
lab_venv() {
    local src="$1" unit stale=0
    # units an earlier lab copied to /etc/systemd/system would shadow the installed ones
    for unit in lio-xcopy.service lio-xcopy-restore.service; do
        if [ -f "/etc/systemd/system/$unit" ] && grep -q lio-xcopy "/etc/systemd/system/$unit"; then
            rm -f "/etc/systemd/system/$unit"
            stale=1
        fi
    done
    if [ "$stale" = 1 ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
    "$src/scripts/install" --venv "$LAB_VENV"
}
