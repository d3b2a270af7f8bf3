package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// EpochFile is the name of the epoch file in the state directory.
const EpochFile = "epoch"

// BumpEpoch reads the gateway epoch from dir/epoch (0 when the file does not exist),
// adds one, writes it back atomically (temporary file, fsync, rename) and returns the new
// epoch (docs/contract.md, "Gateway record": +1 on every start, kept in the
// state directory). The directory is created if needed. A file that does not hold a
// non-negative integer is an error naming it, never silently reset: a reset epoch
// would let consumers take old records for new ones.
func BumpEpoch(dir string) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(dir, EpochFile)
	var epoch int64
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		epoch, err = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil || epoch < 0 {
			return 0, fmt.Errorf("epoch file %s: expected a non-negative integer, got %q", path, strings.TrimSpace(string(data)))
		}
	case os.IsNotExist(err):
	default:
		return 0, fmt.Errorf("epoch file: %w", err)
	}
	epoch++
	tmp, err := os.CreateTemp(dir, EpochFile+".*")
	if err != nil {
		return 0, fmt.Errorf("epoch file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(strconv.FormatInt(epoch, 10) + "\n"); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("epoch file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("epoch file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("epoch file %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("epoch file: %w", err)
	}
	return epoch, nil
}
