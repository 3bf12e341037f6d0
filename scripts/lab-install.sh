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

# lab_venv SRC : lio-xcopy from the source tree SRC into $LAB_VENV (again when the
# tree changed), linked as /usr/local/bin/lio-xcopy; sets LAB_PACKAGE_CHANGED=1/0
lab_venv() {
    local src="$1" stamp="$LAB_VENV/.lab-source" want
    want="$(cd "$src" && find pyproject.toml lio_xcopy -type f ! -name '*.pyc' -print0 \
             | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
    LAB_PACKAGE_CHANGED=0
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
        echo "lab: installing lio-xcopy from $src into $LAB_VENV"
        [ -x "$LAB_VENV/bin/python" ] || python3 -m venv "$LAB_VENV"
        rm -f "$stamp"
        # a copy: the build must not write into the (synced) source tree
        local build
        build="$(mktemp -d)"
        (cd "$src" && tar cf - pyproject.toml README.md lio_xcopy) | tar xf - -C "$build"
        "$LAB_VENV/bin/python" -m pip install -q --disable-pip-version-check "$build"
        rm -rf "$build"
        echo "$want" > "$stamp"
        LAB_PACKAGE_CHANGED=1
    fi
    ln -sfn "$LAB_VENV/bin/lio-xcopy" /usr/local/bin/lio-xcopy
}
