package testutil

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStatusKB returns a "<field>: N kB" value of /proc/<pid>/status, in KiB (e.g.
// field "VmRSS" for the resident set size, "VmHWM" for its peak). Linux only; errors
// when the process or the field does not exist.
func ProcStatusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}
