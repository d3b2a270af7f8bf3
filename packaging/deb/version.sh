#!/bin/sh
# version.sh VERSION [COMMITS]: the Debian package version of a rollcall version, the
# `git describe --tags --always --dirty` that the Makefile stamps into the binary
# (-X main.version). COMMITS (git rev-list --count HEAD) orders builds made before the
# first tag.
#
#   v1.2.3                      1.2.3
#   v1.2.3-rc1                  1.2.3~rc1            (~: sorts before 1.2.3)
#   v1.2.3-5-gabc1234           1.2.3+5.gabc1234     (5 commits after the tag)
#   v1.2.3-5-gabc1234-dirty     1.2.3+5.gabc1234.dirty
#   v1.2.3-dirty                1.2.3+0.dirty        (below 1.2.3+1.g…)
#   0abc123 (no tag yet)        0.0.0~git412.g0abc123 with COMMITS=412 (below any tag)
#   dev                         0.0.0~dev
#
# A Debian version without a revision may hold only [A-Za-z0-9.+~] and must start with a
# digit (deb-version(7)); any other character of a tag becomes '.'.
set -eu

v=${1:?usage: version.sh VERSION [COMMITS]}
commits=${2:-}

dirty=
case $v in *-dirty)
	dirty=dirty
	v=${v%-dirty}
	;;
esac

# --always without a tag: an abbreviated commit hash (which may start with a digit).
if printf '%s\n' "$v" | grep -Eqx '[0-9a-f]{7,40}'; then
	v=0.0.0~git$commits.g$v${dirty:+.$dirty}
	dirty=
fi

case $v in
0.0.0~git*) ;;
v[0-9]* | [0-9]*)
	v=${v#v}
	# git describe's suffix: -<commits since the tag>-g<abbreviated hash>.
	since=$(printf '%s\n' "$v" | sed -n -E 's/^.*-([0-9]+-g[0-9a-f]+)$/\1/p')
	if [ -n "$since" ]; then
		v=${v%-"$since"}
		since=$(printf '%s\n' "$since" | tr - .)
	fi
	# The first '-' of the tag starts a pre-release (semver): ~ sorts it first.
	v=$(printf '%s\n' "$v" | sed -E -e 's/-/~/' -e 's/[^A-Za-z0-9.+~]/./g')
	extra=$since
	[ -n "$dirty" ] && extra=${extra:-0}.$dirty
	v=$v${extra:++$extra}
	;;
*)
	v=0.0.0~$(printf '%s\n' "$v" | sed -E 's/[^A-Za-z0-9.+~]/./g')${dirty:+.$dirty}
	;;
esac

if ! printf '%s\n' "$v" | grep -Eq '^[0-9][A-Za-z0-9.+~]*$'; then
	echo "version.sh: $1 gives $v, not a valid Debian version" >&2
	exit 1
fi
printf '%s\n' "$v"
