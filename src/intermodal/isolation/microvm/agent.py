"""The guest agent: PID 1 of the micro-VM, a busybox shell script in the initramfs, and the host side of its
protocol. It mounts the container's rootfs at /newroot, runs each process chrooted there with
`busybox nsenter -r -w -S -G` (root, cwd, uid, gid: the parts of an OCI process busybox can apply), and
reports exit codes; the guest's kernel and the agent are all the workload sees besides its image and volumes.

Channels are virtio-serial ports (the host kernel has no vhost-vsock), one host socket each:
- `ctl`: lines. Host → guest: `start` (run the container's process, whose script the host put in
  /config.sh as SLOT0), `run SLOT N` and the N lines of an exec's script, `kill SLOT SIGNAL`,
  `resize SLOT ROWS COLS` (its terminal), `drop_caches` (the host wrote into the rootfs, which the guest
  caches), `ps`, `poweroff`. Guest → host: `ready`, `exit SLOT CODE [oom]` (oom: the guest's OOM killer
  ended the container's process), `dropped`, and for `ps` a line `p PID PPID EUID START UTIME STIME TTY_NR
  CMD` per process of the container's (from its /proc/PID/stat, times in clock ticks), then `ps-end UPTIME`.
  The host sends `start` as soon as the container is started, even while the guest boots: QEMU holds a
  port's input until the guest opens it, so no round trip is waited for.
- per slot (0 is the container's process, 1.. serve `exec`): `inK`, `outK`, `errK` streams, and `ttyK`, a
  virtconsole port (a real tty in the guest, /dev/hvcN) when the process wants a terminal.
Every port has a fixed number (port_nr), so its device is known without reading each port's name in
sysfs: /dev/vportVpNR, V being the virtio-serial device's index. Only ctl and slot 0's ports exist at boot:
each port costs the guest ≈10 ms to add under TCG, so the shim hot-plugs an exec slot's ports the first
time the slot is used.
A port buffers nothing once its host side has gone, so after a process exits the agent writes the slot's
random NONCE to its output ports before reporting the exit: the host forwards a stream until it ends with
the nonce and only then ends the VM, so no output is lost at exit; the agent syncs the guest's file systems
before it reports the container process's exit, so the host can kill QEMU then instead of waiting for the
guest to power off (`poweroff` remains for a guest whose output does not end).
Every process the agent starts costs ≈10 ms under TCG (fork, and exec for most applets; exec of a program
in the virtiofs rootfs ≈50 ms), so the boot path uses shell builtins wherever it can and batches mounts into
`mount -a` of fstab files (bundle.py)."""

from __future__ import annotations

import secrets
import shlex
from typing import Any

SLOTS = 4  # the container's process and three concurrent `exec`s
NEWROOT = "/newroot"
# The agent's own mounts: the first lines of its first fstab table (bundle.py), or of /etc/fstab in the
# initramfs when the rootfs is a disk, which needs /dev first.
FSTAB = "proc /proc proc defaults 0 0\nsysfs /sys sysfs defaults 0 0\ndevtmpfs /dev devtmpfs defaults 0 0\n"

# Applets the agent calls, linked to /bin/busybox in the initramfs.
APPLETS = (
    "sh", "mount", "mkdir", "insmod", "cat", "ln", "echo", "printf", "sleep", "poweroff", "sync",
    "hostname", "env", "nsenter", "setsid", "setpriv", "kill", "stty", "mknod", "touch", "rm", "ls", "chmod", "ip",
    "tr",
)  # fmt: skip

INIT = r"""#!/bin/sh
# intermodal guest agent, PID 1 (protocol: intermodal/isolation/microvm/agent.py)
export PATH=/bin
[ "$1" = debug ] && set -x  # qemu.py: INTERMODAL_VM_DEBUG
for m in /lib/modules/*.ko; do insmod "$m" || echo "agent: cannot load $m" >&2; done

fail() { echo "agent: $*" >&2; poweroff -f; }
wait_for() { n=0; until [ -e "$1" ]; do n=$((n+1)); [ $n -gt 500 ] && fail "$1 did not appear"; sleep 0.01; done; }
root_ext4() { wait_for "$1"; mount -t ext4 -o "$2" "$1" /newroot || fail "cannot mount the rootfs"; }
root_virtiofs() { mount -t virtiofs -o "$2" "$1" /newroot || fail "cannot mount the rootfs"; }
NL='
'
mounts() {  # $1: an fstab table (bundle.py); then the mount points to make in the guest, which are inside
    # an earlier mount (DIR/ for a directory, else a file to bind): one mkdir and one touch for what is
    # missing, then one `mount -a` for the whole table, in its order (a process costs ≈10 ms under TCG)
    tab=$1; shift; dirs= files=
    for p in "$@"; do
        case "$p" in
            */) [ -d "/newroot$p" ] || dirs="$dirs$NL/newroot$p" ;;
            *) [ -e "/newroot$p" ] || files="$files$NL/newroot$p"
               [ -d "/newroot${p%/*}" ] || dirs="$dirs$NL/newroot${p%/*}" ;;
        esac
    done
    set -f; IFS=$NL
    [ -z "$dirs" ] || mkdir -p $dirs
    [ -z "$files" ] || touch $files
    unset IFS; set +f
    out=$(mount -a -T "$tab" 2>&1) || fail "cannot mount the container's filesystems: ${out#mount: }"
}
remount_ro() { mount -o remount,bind,ro "/newroot$1" || fail "cannot make $1 read-only"; }
set_hostname() { printf %s "$1" > /proc/sys/kernel/hostname; }
net_setup() {  # $1 address/prefix, $2 gateway or -, $3 MTU: the container's eth0, now ours (network.py)
    for m in /lib/modules/net/*.ko; do insmod "$m" || fail "cannot load $m"; done
    wait_for /sys/class/net/eth0
    # MTU and IFF_UP through sysfs (no process), the address and the route through ip
    echo "$3" > /sys/class/net/eth0/mtu && read -r flags < /sys/class/net/eth0/flags &&
        echo $((flags | 1)) > /sys/class/net/eth0/flags && ip addr add "$1" dev eth0 || fail "cannot configure eth0"
    [ "$2" = - ] || ip route add default via "$2" || fail "cannot add the default route"
}
port() {  # dev=the device of port $1, /dev/vportVpNR: NR is fixed (port_nr in agent.py: ctl 1, then four per
    # slot: in, out, err, tty); V is the virtio-serial device's virtio index, which depends on the VM's other
    # devices, so it is read once from ctl's entry in sysfs (a glob: no process)
    if [ -z "$vport" ]; then
        for v in /sys/class/virtio-ports/vport*p1; do [ -e "$v" ] && v=${v##*/} && vport=/dev/${v%1}; done
    fi
    case "$1" in
        ctl) dev=${vport}1 ;;
        in*) dev=$vport$((2 + 4 * ${1#in})) ;;
        out*) dev=$vport$((3 + 4 * ${1#out})) ;;
        err*) dev=$vport$((4 + 4 * ${1#err})) ;;
        tty*) dev=$vport$((5 + 4 * ${1#tty})) ;;
    esac
}
need_ports() {  # ports (names) or devices (paths): they appear asynchronously, after virtio_console loads
    # or when hot-plugged
    for p in "$@"; do
        n=0
        until case "$p" in /*) dev=$p ;; *) port "$p" ;; esac; [ -n "$vport" ] && [ -e "$dev" ]; do
            n=$((n+1)); [ $n -gt 1000 ] && { echo "agent: channel $p did not appear" >&2; return 1; }; sleep 0.01
        done
    done
}
ps_report() {  # `ps`: the container's processes, those whose root is /newroot (not the agent's, not the
    # kernel's); a line each (one write, whatever other slots report meanwhile), then the guest's uptime
    for d in /proc/[0-9]*; do
        [ "$d/root" -ef /newroot ] && read -r stat < "$d/stat" 2>/dev/null || continue
        comm=${stat#*(}; comm=${comm%)*}
        set -- ${stat##*) }  # state ppid pgrp session tty_nr tpgid flags 4×faults utime stime 4× 2× starttime
        euid=; while read -r key r e _; do [ "$key" = Uid: ] && euid=$e && break; done < "$d/status"
        cmd=$(tr '\0\n' '  ' < "$d/cmdline" 2>/dev/null)
        echo "p ${d#/proc/} $2 ${euid:-0} ${20} ${12} ${13} $5 ${cmd:-[$comm]}"
    done
    read -r up _ < /proc/uptime
    echo "ps-end $up"
}
rlimit() {  # $1 ulimit's letter, $2 soft, $3 hard: soft first when lowering, hard, soft again when raising
    ulimit -S "-$1" "$2" 2>/dev/null; ulimit -H "-$1" "$3" 2>/dev/null; ulimit -S "-$1" "$2" 2>/dev/null
}
run_slot() {  # $1 slot, $2 its script (process_script), which sets NONCE, TTY, STDIN, SIZE and "$@"
    k=$1
    eval "$2"
    if [ -n "$TTY" ]; then need=$TTY; else need="out$k err$k ${STDIN#/ports/}"; fi
    need_ports $need || { echo "exit $k 125" >&3; return; }
    case "$STDIN" in /ports/*) port "${STDIN#/ports/}"; STDIN=$dev ;; esac
    if [ -n "$TTY" ]; then
        # the container's terminal is its /dev/console, as runc arranges it (runtime-spec config.md#process)
        [ "$k" = 0 ] && touch /newroot/dev/console && mount --bind "$TTY" /newroot/dev/console
        # an exec's terminal keeps its name in the container: ttyname(3) looks /proc/self/fd/0's path up in /dev
        [ "$k" = 0 ] || [ -e "/newroot$TTY" ] || { touch "/newroot$TTY" && mount --bind "$TTY" "/newroot$TTY"; }
        exec 4<>"$TTY"
        stty -F "$TTY" sane $SIZE 2>/dev/null
        [ "$k" = 0 ] || echo "$TTY" > "/run/$k.tty"  # for `resize` (slot 0's is hvc0)
        setsid -c "$@" <&4 >&4 2>&4 4>&- 3>&- &
    else
        port "out$k"; exec 4>"$dev"; port "err$k"; exec 5>"$dev"
        "$@" <"$STDIN" >&4 2>&5 4>&- 5>&- 3>&- &
    fi
    echo $! > "/run/$k.pid"
    wait $!
    code=$?
    oom=
    if [ "$k" = 0 ] && [ "$code" = 137 ]; then  # SIGKILL: the OOM killer's, if it ever ran in this guest
        while read -r key n; do [ "$key" = oom_kill ] && { [ "$n" = 0 ] || oom=" oom"; break; }; done < /proc/vmstat
    fi
    [ "$k" != 0 ] || sync  # before the exit report: the host may then end the VM at once (shim.py)
    : > "/run/$k.pid"
    printf %s "$NONCE" >&4
    [ -n "$TTY" ] || printf %s "$NONCE" >&5
    # an exec slot is closed before its report, for the next exec in it to open the ports again (a port has one
    # opener at a time); slot 0 is never reused, and each close waits for the host to acknowledge it
    [ "$k" = 0 ] || exec 4>&- 5>&-
    echo "exit $k $code$oom" >&3
}

. /config.sh
configure  # mounts /proc, /sys and /dev too (bundle.py): the ports appear meanwhile
need_ports ctl || fail "no channel to the host"
exec 3<>"$dev"
echo ready >&3
# lo up (IFF_UP) without a process (≈15 ms of the kernel's under TCG): no process runs before `start`
read -r flags < /sys/class/net/lo/flags && echo $((flags | 1)) > /sys/class/net/lo/flags
while read -r op slot arg <&3; do
    case "$op" in
        start) run_slot 0 "$SLOT0" & ;;
        run)  # followed by the script's $arg lines
            script=
            while [ "$arg" -gt 0 ] && IFS= read -r line <&3; do script="$script$line$NL"; arg=$((arg-1)); done
            run_slot "$slot" "$script" & ;;
        kill) read -r pid 2>/dev/null < "/run/$slot.pid" && kill "-$arg" "$pid" 2>/dev/null ;;
        drop_caches) echo 3 > /proc/sys/vm/drop_caches; echo dropped >&3 ;;  # the host wrote into the rootfs
        ps) ps_report >&3 ;;
        resize)  # the kernel tells the terminal's foreground process group (SIGWINCH)
            t=/dev/hvc0; [ "$slot" = 0 ] || read -r t < "/run/$slot.tty" 2>/dev/null
            stty -F "$t" rows "${arg% *}" cols "${arg#* }" 2>/dev/null ;;
        poweroff) break ;;
    esac
done
sync
poweroff -f
"""


def process_script(
    process: dict[str, Any],
    slot: int,
    *,
    attach_stdin: bool,
    nonce: str,
    tty: str = "",
    exe: str | None = None,
) -> str:
    """The shell the agent sources to run one OCI `process` (runtime-spec config.md#process) in `slot`;
    `tty` is the guest's console device for a terminal process; `exe`, args[0] already looked up in the
    PATH (bundle.host_executable), else the agent looks it up."""
    user = process.get("user") or {}
    cwd = process.get("cwd") or "/"
    env = [e for e in process.get("env") or [] if "=" in e]
    # Applet names, not /bin/busybox: the agent's shell runs `env` in the process it forks (busybox's NOEXEC
    # applets), which saves an exec; env and setpriv exec the next applet by name.
    argv = ["env", "-i", *env]
    if process.get("noNewPrivileges"):
        argv += ["setpriv", "--nnp"]
    argv += [
        "nsenter", f"-r{NEWROOT}", f"-w{NEWROOT}{cwd}",
        "-S", str(int(user.get("uid", 0))), "-G", str(int(user.get("gid", 0))), "--",
    ]  # fmt: skip
    lines = [
        f"NONCE={shlex.quote(nonce)}",
        f"TTY={tty}",
        f"STDIN=/ports/in{slot}" if attach_stdin else "STDIN=/dev/null",
        f"[ -d {shlex.quote(NEWROOT + cwd)} ] || mkdir -p {shlex.quote(NEWROOT + cwd)}",
    ]
    size = process.get("consoleSize") or {}
    rows, cols = int(size.get("height") or 0), int(size.get("width") or 0)
    lines.append(f"SIZE='rows {rows} cols {cols}'" if rows and cols else "SIZE=")
    for limit in process.get("rlimits") or []:
        flag = _ULIMIT_FLAGS.get(limit.get("type", ""))
        if flag:
            # the guest's root may both lower and raise limits (the agent's rlimit)
            lines.append(f"rlimit {flag} {_ulimit_value(limit['soft'])} {_ulimit_value(limit['hard'])}")
    lines += [f"exe={shlex.quote(exe)}"] if exe else _resolve_command(process["args"][0], env)
    rest = " ".join(shlex.quote(a) for a in process["args"][1:])
    lines.append("set -- " + " ".join(shlex.quote(a) for a in argv) + ' "$exe" ' + rest)
    return "\n".join(lines) + "\n"


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _resolve_command(name: str, env: list[str]) -> list[str]:
    """Shell that sets `exe` to the image's program for `name`, found in the process's PATH inside the new
    root, as execvp would (runtime-spec config.md#process: args[0] is looked up in the PATH of env). The
    agent's busybox runs its own applet for a bare name like `ls` or `true` even when the image has another
    program of that name, so the workload always gets a path. Not found: the first PATH directory, for
    exec to fail there with 127."""
    if "/" in name:
        return [f"exe={shlex.quote(name)}"]
    dirs = search_path(env)
    quoted = shlex.quote(name)
    return [
        f"exe={shlex.quote(dirs[0].rstrip('/') + '/' + name)}",
        f"for d in {' '.join(shlex.quote(d.rstrip('/')) for d in dirs)}; do "
        f'if [ -e "{NEWROOT}$d"/{quoted} ] || [ -L "{NEWROOT}$d"/{quoted} ]; then exe="$d"/{quoted}; break; fi; '
        "done",
    ]


def search_path(env: list[str]) -> list[str]:
    """The directories of the process's PATH (its last PATH= wins, as in a shell), else the default."""
    path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), DEFAULT_PATH)
    return [d.rstrip("/") or "/" for d in path.split(":") if d.startswith("/")] or ["/bin"]


_ULIMIT_FLAGS = {  # busybox ash's ulimit letters for the RLIMIT_* names of config.md#posix-process
    "RLIMIT_NOFILE": "n", "RLIMIT_NPROC": "p", "RLIMIT_CORE": "c", "RLIMIT_STACK": "s", "RLIMIT_FSIZE": "f",
    "RLIMIT_DATA": "d", "RLIMIT_AS": "v", "RLIMIT_MEMLOCK": "l", "RLIMIT_LOCKS": "w", "RLIMIT_NICE": "e",
    "RLIMIT_RTPRIO": "r", "RLIMIT_MSGQUEUE": "q", "RLIMIT_SIGPENDING": "i", "RLIMIT_CPU": "t",
}  # fmt: skip


def _ulimit_value(value: int) -> str:
    return "unlimited" if int(value) >= 2**63 else str(int(value))


def start_config(
    process: dict[str, Any], *, attach_stdin: bool, nonce: str, terminal: bool, exe: str | None
) -> str:
    """The lines of /config.sh that hold the container's process (slot 0) for `start`."""
    tty = "/dev/hvc0" if terminal else ""  # slot 0's console is the VM's first
    script = process_script(
        process, 0, attach_stdin=attach_stdin and not terminal, nonce=nonce, tty=tty, exe=exe
    )
    return f"SLOT0={shlex.quote(script)}\n"


def port_nr(name: str) -> int:
    """A port's fixed number on the virtio-serial device, which names its guest device (the agent's `port`)."""
    if name == "ctl":
        return 1
    for prefix, offset in (("in", 0), ("out", 1), ("err", 2), ("tty", 3)):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return 2 + 4 * int(name[len(prefix) :]) + offset
    raise ValueError(f"no such port: {name}")


def new_nonce() -> str:
    """Printable (a shell string cannot hold NUL) and random, so no workload prints it by chance."""
    return "<<intermodal-eof-" + secrets.token_hex(12) + ">>"


def port_names(slot: int, *, terminal: bool, stdin: bool) -> list[str]:
    """A slot's ports: a console (hvc) port `ttyK` for a terminal, else `outK`, `errK` and maybe `inK`."""
    if terminal:
        return [f"tty{slot}"]
    return [*([f"in{slot}"] if stdin else []), f"out{slot}", f"err{slot}"]
