#!/usr/bin/env bash
# test.sh DEB: installs the rollcall Debian package with dpkg and checks what it set up,
# starts the gateway as its systemd unit would (as user rollcall, the unit's command line,
# working directory, umask and privileges) without systemd (CI runs in a container where
# it is not PID 1), waits for /readyz, stops it with SIGTERM (exit status 0), reinstalls it
# over an edited conffile, then removes and purges it. `make check-deb` runs it.
#
# Needs root and dpkg; without them it is skipped, except with CI=true, where it fails.
# It refuses to run where the rollcall package is installed or its config and state are
# kept (removed, not purged), or where /etc/rollcall or /var/lib/rollcall exist: its
# purge would delete them. A user
# rollcall it had to create is deleted at the end (the package itself keeps it on purge).
# The gateway listens on ports the kernel picks (a copy of the conffile with port 0), so
# a broker on 1883 or another service on 9180 does not get in the way.
set -euo pipefail

deb=${1:?usage: packaging/deb/test.sh dist/rollcall_VERSION_ARCH.deb}
pkg=rollcall
user=rollcall
conf=/etc/rollcall/gateway.yaml
state=/var/lib/rollcall
unit=/lib/systemd/system/rollcall.service

skip() {
	if [ "${CI:-}" = true ]; then
		echo "deb-test: FAIL: $* (CI=true: not skipped)" >&2
		exit 1
	fi
	echo "deb-test: SKIP: $*"
	exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (dpkg -i, a system user)"
command -v dpkg >/dev/null 2>&1 || skip "needs dpkg (Debian)"
command -v setpriv >/dev/null 2>&1 || skip "needs setpriv (util-linux)"
[ -f "$deb" ] || { echo "deb-test: FAIL: $deb: no such package (make deb)" >&2; exit 1; }
# Any state but not-installed counts: a package removed but not purged (config-files)
# has kept its config and state (the epoch file), which the purge at the end deletes.
case $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true) in
"" | *" not-installed") ;;
*)
	echo "deb-test: FAIL: package $pkg is installed on this machine, or its config and state are kept ($(dpkg-query -W -f='${Status}' "$pkg")); the test would purge them" >&2
	exit 1
	;;
esac
for d in /etc/rollcall /var/lib/rollcall; do
	if [ -e "$d" ]; then
		echo "deb-test: FAIL: $d exists on this machine (a rollcall installed another way?); the test's purge would delete it" >&2
		exit 1
	fi
done

passed=0
ok() {
	passed=$((passed + 1))
	echo "ok   $*"
}
fail() {
	echo "FAIL $*" >&2
	echo "deb-test: $passed passed, 1 failed"
	exit 1
}
# expect DESCRIPTION COMMAND...: the command succeeds.
expect() {
	local what=$1
	shift
	if "$@" >/dev/null; then ok "$what"; else fail "$what: $* failed"; fi
}

tmp=$(mktemp -d)
chmod 0755 "$tmp" # the override config in it is read by user rollcall
gw_pid=
installed=
user_existed=
getent passwd "$user" >/dev/null && user_existed=1
cleanup() {
	local rc=$?
	if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
		kill -KILL "$gw_pid" 2>/dev/null || true
	fi
	if [ -n "$installed" ]; then
		dpkg --purge "$pkg" >/dev/null 2>&1 || true
	fi
	if [ -z "$user_existed" ] && getent passwd "$user" >/dev/null; then
		userdel "$user" 2>/dev/null || true
		getent group "$user" >/dev/null && groupdel "$user" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ] && [ -s "$tmp/gateway.log" ]; then
		echo "--- gateway log (last 20 lines)" >&2
		tail -n 20 "$tmp/gateway.log" >&2
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
# A command that fails outside the checks (set -e) is named before the script exits.
trap 'echo "FAIL line $LINENO: $BASH_COMMAND" >&2; echo "deb-test: $passed passed, 1 failed"' ERR

status() { dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true; }
# owner_mode PATH: "user:group mode"
owner_mode() { stat -c '%U:%G %a' "$1"; }

# --- install
echo "deb-test: dpkg -i $deb"
installed=1
dpkg -i "$deb" </dev/null
expect "installed: $(dpkg-query -W -f='${Package} ${Version} ${Architecture}' "$pkg")" \
	test "$(status)" = "install ok installed"
expect "/usr/bin/rollcall runs: $(/usr/bin/rollcall version)" /usr/bin/rollcall version

# --- the user
expect "user $user exists" getent passwd "$user"
groups=" $(id -nG "$user") "
[[ $groups == *" $user "* && $groups == *" dialout "* ]] || fail "user $user: groups$groups, want $user and dialout"
ok "user $user in groups:$groups"
[ "$(getent passwd "$user" | cut -d: -f7)" = /usr/sbin/nologin ] || fail "user $user has a login shell"
ok "user $user has no login shell"

# --- the files
conffiles=$(dpkg-query -W -f='${Conffiles}' "$pkg")
[[ $conffiles == *" $conf "* ]] || fail "$conf is not a conffile: $conffiles"
ok "$conf is a conffile"
[ "$(owner_mode /etc/rollcall)" = "root:$user 750" ] || fail "/etc/rollcall: $(owner_mode /etc/rollcall), want root:$user 750"
[ "$(owner_mode "$conf")" = "root:$user 640" ] || fail "$conf: $(owner_mode "$conf"), want root:$user 640"
ok "/etc/rollcall and $conf: root:$user, 0750 and 0640"
[ "$(owner_mode "$state")" = "$user:$user 750" ] || fail "$state: $(owner_mode "$state"), want $user:$user 750"
ok "$state: $user:$user 0750"
expect "/usr/share/doc/rollcall/examples/edge-box.yaml installed" test -s /usr/share/doc/rollcall/examples/edge-box.yaml

# --- the unit
execstart=$(sed -n 's/^ExecStart=//p' "$unit")
[[ $execstart == "/usr/bin/rollcall gateway --config $conf "* ]] || fail "$unit: ExecStart=$execstart"
ok "$unit: ExecStart=$execstart"
for kv in "User=$user" "Group=$user" "SupplementaryGroups=dialout" "StateDirectory=rollcall" "WorkingDirectory=$state"; do
	grep -qx "$kv" "$unit" || fail "$unit: no $kv"
done
ok "$unit: User, Group, SupplementaryGroups, StateDirectory, WorkingDirectory fit the package"
if command -v systemd-analyze >/dev/null 2>&1; then
	expect "systemd-analyze verify $unit" systemd-analyze verify "$unit"
fi

# --- the packaged config, as the gateway's user reads it
check=$(setpriv --reuid "$user" --regid "$user" --init-groups /usr/bin/rollcall check --config "$conf" 2>&1) ||
	fail "rollcall check --config $conf (as $user): $check"
ok "rollcall check as $user: $check"

# --- start the gateway as the unit would, on ports the kernel picks
cp "$conf" "$tmp/gateway.yaml"
sed -i -e 's|^\(  embedded_listen:\) 127\.0\.0\.1:1883|\1 127.0.0.1:0|' \
	-e 's|^\(  listen:\) 127\.0\.0\.1:9180|\1 127.0.0.1:0|' "$tmp/gateway.yaml"
[ "$(grep -c '127\.0\.0\.1:0' "$tmp/gateway.yaml")" = 2 ] || fail "$tmp/gateway.yaml: the two listen addresses were not replaced"
chmod 0644 "$tmp/gateway.yaml"
read -r -a argv <<<"$(printf '%s\n' "$execstart" | sed "s|--config $conf |--config $tmp/gateway.yaml |")"
[[ " ${argv[*]} " == *" --config $tmp/gateway.yaml "* ]] || fail "ExecStart: --config not replaced: ${argv[*]}"
umask_=$(sed -n 's/^UMask=//p' "$unit")
echo "deb-test: starting ${argv[*]} (as $user, in $state, umask $umask_)"
: >"$tmp/gateway.log" # there before the poll below reads it
(
	cd "$state"
	umask "$umask_"
	# NoNewPrivileges=yes, CapabilityBoundingSet= (empty), the environment systemd gives a
	# system service with StateDirectory=.
	exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
		HOME="$state" USER="$user" LOGNAME="$user" SHELL=/usr/sbin/nologin STATE_DIRECTORY="$state" \
		setpriv --reuid "$user" --regid "$user" --init-groups --no-new-privs --bounding-set -all --inh-caps -all \
		"${argv[@]}"
) 2>"$tmp/gateway.log" &
gw_pid=$!

# http_status ADDR PATH: the HTTP status code of GET PATH on ADDR (host:port), or nothing.
http_status() {
	(
		exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 0
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$1" >&3
		read -r -t 5 _ code _ <&3 && echo "$code"
	) 2>/dev/null || true
}
# The gateway logs its HTTP address (port 0: the kernel's choice) in "gateway starting";
# /readyz answers 200 once it has started and its publisher is connected.
deadline=$((SECONDS + 30))
addr=
code=
while :; do
	kill -0 "$gw_pid" 2>/dev/null || {
		wait "$gw_pid" && rc=0 || rc=$?
		gw_pid=
		fail "the gateway exited (status $rc) before /readyz answered 200"
	}
	if [ -z "$addr" ]; then
		addr=$(sed -n 's/.*"msg":"gateway starting".*"http":"\([^"]*\)".*/\1/p' "$tmp/gateway.log" | head -n 1 || true)
	fi
	if [ -n "$addr" ]; then
		code=$(http_status "$addr" /readyz)
		[ "$code" = 200 ] && break
	fi
	[ $SECONDS -lt $deadline ] || fail "no 200 from /readyz within 30 s (address ${addr:-not logged}, last status ${code:-none})"
	sleep 0.1
done
ok "gateway ready: GET http://$addr/readyz: 200"
expect "GET http://$addr/healthz: 200" test "$(http_status "$addr" /healthz)" = 200

# --- it runs as the unit says
uid=$(id -u "$user")
dialout=$(getent group dialout | cut -d: -f3)
read -r -a uids <<<"$(sed -n 's/^Uid:\s*//p' "/proc/$gw_pid/status")"
read -r -a gids <<<"$(sed -n 's/^Gid:\s*//p' "/proc/$gw_pid/status")"
sup=" $(sed -n 's/^Groups:\s*//p' "/proc/$gw_pid/status") "
[ "${uids[*]}" = "$uid $uid $uid $uid" ] || fail "gateway uids ${uids[*]}, want $uid ($user)"
[ "${gids[*]}" = "$(id -g "$user") $(id -g "$user") $(id -g "$user") $(id -g "$user")" ] || fail "gateway gids ${gids[*]}"
[[ $sup == *" $dialout "* ]] || fail "gateway groups$sup: no dialout ($dialout)"
ok "gateway (pid $gw_pid, $(readlink "/proc/$gw_pid/exe")) runs as $user (uid $uid), groups$sup(dialout $dialout)"
grep -q '^NoNewPrivs:\s*1$' "/proc/$gw_pid/status" || fail "gateway: NoNewPrivs not set"
grep -q '^CapBnd:\s*0*$' "/proc/$gw_pid/status" || fail "gateway: capabilities left in its bounding set"
ok "gateway: no new privileges, no capabilities"
[ -z "$(find "$state" -mindepth 1 ! -user "$user")" ] && [ -n "$(find "$state" -mindepth 1)" ] ||
	fail "$state: $(ls -la "$state")"
ok "$state holds the gateway's state, all its own: $(cd "$state" && echo *)"

# --- SIGTERM: status offline published, exit 0 (the unit's TimeoutStopSec=10s)
kill -TERM "$gw_pid"
deadline=$((SECONDS + 10))
while kill -0 "$gw_pid" 2>/dev/null; do
	[ $SECONDS -lt $deadline ] || fail "the gateway still runs 10 s after SIGTERM"
	sleep 0.1
done
wait "$gw_pid" && rc=0 || rc=$?
gw_pid=
[ $rc = 0 ] || fail "the gateway exited with status $rc after SIGTERM"
grep -q '"msg":"gateway stopped"' "$tmp/gateway.log" || fail "no \"gateway stopped\" in its log"
ok "SIGTERM: the gateway stopped, exit status 0"

# --- reinstall (an upgrade's path) over an edited conffile: the edit is kept, unasked
echo "# edited on this box" >>"$conf"
chmod 0644 "$conf" # postinst puts back root:rollcall 0640
dpkg -i "$deb" </dev/null
grep -qx '# edited on this box' "$conf" || fail "reinstall: the edit of $conf was lost"
[ "$(owner_mode "$conf")" = "root:$user 640" ] || fail "reinstall: $conf: $(owner_mode "$conf")"
ok "reinstall kept the edited $conf (root:$user 0640)"

# --- remove: the binary goes; the config, the state and the user stay
dpkg -r "$pkg" </dev/null
expect "dpkg -r: status $(status)" test "$(status)" = "deinstall ok config-files"
expect "dpkg -r: /usr/bin/rollcall removed" test ! -e /usr/bin/rollcall
expect "dpkg -r: $unit removed" test ! -e "$unit"
expect "dpkg -r: $conf kept" grep -qx '# edited on this box' "$conf"
expect "dpkg -r: $state kept" test -d "$state"

# --- purge: config and state go; the user stays (Debian keeps system users)
dpkg -P "$pkg" </dev/null
installed=
expect "dpkg -P: not installed" test -z "$(status | grep ' installed$' || true)"
expect "dpkg -P: /etc/rollcall deleted" test ! -e /etc/rollcall
expect "dpkg -P: $state deleted" test ! -e "$state"
expect "dpkg -P: user $user kept" getent passwd "$user"

echo "deb-test: $passed passed, 0 failed"
