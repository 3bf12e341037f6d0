# bash completion for lio-xcopy(8)
# Installed as share/bash-completion/completions/lio-xcopy; also printed by
# `lio-xcopy completion bash` (e.g. > /etc/bash_completion.d/lio-xcopy).

_lio_xcopy() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion -n = || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi
    COMPREPLY=()

    local commands="daemon copy library backup restore catalog saveconfig restoreconfig status version completion help"
    local shell_commands="ls cd pwd get set refresh bookmarks clearconfig"
    local paths="/ /backstores /backstores/disk /backstores/tape /backstores/passthrough /backstores/changer /backstores/library_drive /loopback /iscsi /copy_groups"

    if ((cword == 1)); then
        if [[ $cur == /* ]]; then
            COMPREPLY=($(compgen -W "$paths" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands $shell_commands -h --help --version" -- "$cur"))
        fi
        return
    fi

    local cmd=${words[1]} opts=""
    case $cmd in
        daemon)
            case $prev in
                --config|--pidfile|--state-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
                --log-level) COMPREPLY=($(compgen -W "debug info warning error" -- "$cur")); return ;;
                --copy-digest) COMPREPLY=($(compgen -W "xxh3-128 sha256" -- "$cur")); return ;;
                --subtype) return ;;
            esac
            opts="-h --help -v --verbose --log-level --subtype --pidfile --state-file --config --copy-digest" ;;
        copy)
            case $cur in
                if=*|of=*)
                    local key=${cur%%=*} val=${cur#*=}
                    COMPREPLY=($(compgen -P "$key=" -W "$(ls -d /dev/sg* /dev/nst* /dev/sd* 2>/dev/null)" -- "$val"))
                    return ;;
            esac
            [[ $prev == --emit-plist ]] && { COMPREPLY=($(compgen -f -- "$cur")); return; }
            opts="if= of= count= skip= seek= bs= tbs= header= filemark= --emit-plist --lid1 --quiet --json -h --help"
            compopt -o nospace 2>/dev/null ;;
        library)
            if ((cword == 2)); then
                COMPREPLY=($(compgen -d -- "$cur") $(compgen -W "-h --help" -- "$cur"))
                return
            fi
            if ((cword == 3)); then
                COMPREPLY=($(compgen -W "create list where add import export" -- "$cur"))
                return
            fi
            case ${words[3]} in
                create) opts="--slots --ie --drives --capacity --barcodes" ;;
                add) opts="--ie" ;;
                import) opts="--barcode --read-only --copy"
                        [[ $cur != -* ]] && COMPREPLY=($(compgen -f -- "$cur")) ;;
                export) [[ $cur != -* ]] && COMPREPLY=($(compgen -d -- "$cur")) ;;
            esac ;;
        backup|restore)
            case $prev in
                --changer|--drive) COMPREPLY=($(compgen -W "$(ls -d /dev/sg* /dev/nst* 2>/dev/null)" -- "$cur")); return ;;
                --catalog) COMPREPLY=($(compgen -f -- "$cur")); return ;;
                --slot|--barcode|--skip|--count|--record|--seek|--source) return ;;
            esac
            if [[ $cmd == backup ]]; then
                opts="--changer --drive --slot --barcode --skip --count --record --unload --catalog --quiet --json -h --help"
            else
                opts="--latest --source --changer --drive --seek --unload --catalog --quiet --json -h --help"
            fi
            [[ $cur != -* ]] && COMPREPLY=($(compgen -W "$(ls -d /dev/sd* /dev/sg* 2>/dev/null)" -- "$cur")) ;;
        catalog)
            case $prev in
                --catalog) COMPREPLY=($(compgen -f -- "$cur")); return ;;
                --job) return ;;
            esac
            opts="--catalog --job -h --help" ;;
        saveconfig|restoreconfig|status)
            opts="-h --help"
            [[ $cur != -* ]] && COMPREPLY=($(compgen -f -- "$cur")) ;;
        completion)
            opts="bash -h --help" ;;
        help)
            ((cword == 2)) && opts="$commands" ;;
        ls|cd)
            COMPREPLY=($(compgen -W "$paths" -- "$cur"))
            return ;;
        /*)
            if ((cword == 2)); then
                opts="ls info help create delete"
                [[ $cmd == / ]] && opts="ls info help saveconfig restoreconfig clearconfig status refresh version"
            elif [[ ${words[2]} == create ]]; then
                case $cmd in
                    /backstores/disk) opts="name= file= size= block_size= wwn=" ;;
                    /backstores/tape) opts="name= file= capacity= wwn= format=" ;;
                    /backstores/passthrough) opts="name= device=" ;;
                    /backstores/changer) opts="name= library= slots= ie_slots= drives= capacity= barcodes= wwn=" ;;
                    /backstores/library_drive) opts="name= library= drive= wwn=" ;;
                esac
                compopt -o nospace 2>/dev/null
            elif [[ ${words[2]} == clearconfig ]]; then
                opts="confirm=true"
            fi ;;
    esac
    COMPREPLY+=($(compgen -W "$opts" -- "$cur"))
}

complete -F _lio_xcopy lio-xcopy
