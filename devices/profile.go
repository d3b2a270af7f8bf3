// Package devices turns a Modbus responder into a known device: it identifies it (FC
// 0x2B/0x0E Read Device Identification, else the profile's identity registers), matches
// a device profile from configs/profiles/*.yaml, and knows how to poll it and read its
// health (e.g. the CiA 402 statusword).
package devices

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"

	"github.com/rollcall-edge/rollcall/configs"
	"github.com/rollcall-edge/rollcall/internal/yamlx"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// MaxProfileBytes is the largest device profile file loaded (256 KiB; the shipped
// profiles are under 1 KiB). A larger file is refused before it is read, with an error
// naming it, its size and the limit.
const MaxProfileBytes = 256 << 10

// Decoders of a status read.
const (
	DecodeNone   = "none"   // liveness only: any valid answer is passing
	DecodeCIA402 = "cia402" // CiA 402 statusword (+ optional error code 0x603F)
)

// RegisterRead is a block of registers to read.
type RegisterRead struct {
	// Function: "holding" (FC 03) or "input" (FC 04). Default "holding".
	Function string `yaml:"function"`
	// Address: 0-based PDU address of the first register.
	Address uint16 `yaml:"address"`
	// Count: number of 16-bit registers, 1–125.
	Count uint16 `yaml:"count"`
}

// FunctionCode returns the Modbus function code of the read (0x03 or 0x04).
func (r RegisterRead) FunctionCode() byte {
	if r.Function == "input" {
		return modbus.FuncReadInputRegisters
	}
	return modbus.FuncReadHoldingRegisters
}

// Match selects devices by their identification objects. Each non-empty field is a Go
// regular expression (RE2 syntax) that must match the object; all must match. An empty
// Match matches nothing unless the profile is the fallback.
type Match struct {
	Vendor      string `yaml:"vendor"`       // object 0x00 VendorName
	ProductCode string `yaml:"product_code"` // object 0x01 ProductCode
	ProductName string `yaml:"product_name"` // object 0x04 ProductName
	Model       string `yaml:"model"`        // object 0x05 ModelName
}

// SerialSource says where the serial number is read: an identification object (e.g.
// 0x80, a private extended object) or a block of registers holding ASCII (2 characters
// per register, high byte first, NUL/space padded).
type SerialSource struct {
	Object    *int          `yaml:"object"`
	Registers *RegisterRead `yaml:"registers"`
}

// IdentitySpec says how to read identity beyond the standard objects.
type IdentitySpec struct {
	Serial *SerialSource `yaml:"serial"`
}

// StatusSpec is the health poll: one register read, decoded.
type StatusSpec struct {
	// DeviceID: use a Read Device Identification (basic) request as the heartbeat when
	// the device supports FC 0x2B; Read is used otherwise. For the fallback profile.
	DeviceID bool `yaml:"device_id"`
	// Read is the status read (e.g. FC 03, address 0, 2 registers).
	Read *RegisterRead `yaml:"read"`
	// Decode: "none" or "cia402". Default "none".
	Decode string `yaml:"decode"`
	// Statusword is the offset (registers) of the CiA 402 statusword within Read.
	Statusword int `yaml:"statusword"`
	// ErrorCode is the offset (registers) of the error code (0x603F) within Read, or nil.
	ErrorCode *int `yaml:"error_code"`
}

// Profile is one device profile file.
type Profile struct {
	Name     string            `yaml:"name"`     // unique profile name, published as "profile"
	Service  string            `yaml:"service"`  // service name, e.g. "servo-drive"
	Priority int               `yaml:"priority"` // higher is tried first; ties by name
	Fallback bool              `yaml:"fallback"` // matches any responder no other profile matches
	Match    Match             `yaml:"match"`
	Identity IdentitySpec      `yaml:"identity"`
	Status   StatusSpec        `yaml:"status"`
	Meta     map[string]string `yaml:"meta"` // copied into every instance's meta

	File string `yaml:"-"` // where it was loaded from

	re [4]*regexp.Regexp // compiled Match: vendor, product code, product name, model
}

// Profiles is a loaded, validated, ordered set of profiles.
type Profiles struct {
	list     []*Profile // non-fallback, by priority desc then name
	fallback *Profile
}

// DefaultFallback is the built-in modbus-device profile used when no loaded profile is a
// fallback: heartbeat = Read Device Identification (basic), or holding register 0.
func DefaultFallback() *Profile {
	return &Profile{
		Name: "modbus-device", Service: "modbus-device", Fallback: true,
		Status: StatusSpec{DeviceID: true, Read: &RegisterRead{Function: "holding", Address: 0, Count: 1}, Decode: DecodeNone},
		File:   "(built in)",
	}
}

// LoadProfiles reads every *.yaml file of the given directories (in name order),
// validates each profile and returns them ordered. Errors name the file, line and key.
// Duplicate profile names and more than one fallback are errors. When no fallback
// profile is loaded, DefaultFallback is used.
func LoadProfiles(dirs []string) (*Profiles, error) {
	var all []*Profile
	for _, dir := range dirs {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("profiles dir: %w", err)
		}
		ps, err := loadFS(os.DirFS(dir), dir)
		if err != nil {
			return nil, err
		}
		all = append(all, ps...)
	}
	return NewProfiles(all)
}

// BuiltinProfiles loads the profiles shipped in the binary (configs/profiles of the
// source tree, embedded by package configs).
func BuiltinProfiles() (*Profiles, error) {
	sub, err := fs.Sub(configs.Profiles, "profiles")
	if err != nil {
		return nil, err
	}
	return LoadProfilesFS(sub, "(built in)")
}

// LoadProfilesFS is LoadProfiles for the *.yaml files at the root of fsys (e.g. the
// profiles embedded in the binary); name prefixes file names in errors.
func LoadProfilesFS(fsys fs.FS, name string) (*Profiles, error) {
	all, err := loadFS(fsys, name)
	if err != nil {
		return nil, err
	}
	return NewProfiles(all)
}

func loadFS(fsys fs.FS, name string) ([]*Profile, error) {
	files, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("profiles %s: %w", name, err)
	}
	sort.Strings(files)
	var all []*Profile
	for _, f := range files {
		data, err := yamlx.ReadFileFS(fsys, f, path.Join(name, f), MaxProfileBytes, "a device profile")
		var yerr *yamlx.Error
		if errors.As(err, &yerr) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("profile: %w", err)
		}
		p, err := ParseProfile(path.Join(name, f), data)
		if err != nil {
			return nil, err
		}
		all = append(all, p)
	}
	return all, nil
}

// NewProfiles validates a set of parsed profiles (unique names, at most one fallback)
// and orders them.
func NewProfiles(all []*Profile) (*Profiles, error) {
	ps := &Profiles{}
	seen := map[string]string{}
	for _, p := range all {
		if prev, dup := seen[p.Name]; dup {
			return nil, fmt.Errorf("%s: profile name %q already used by %s", p.File, p.Name, prev)
		}
		seen[p.Name] = p.File
		if p.Fallback {
			if ps.fallback != nil {
				return nil, fmt.Errorf("%s: a second fallback profile (%s is one already)", p.File, ps.fallback.File)
			}
			ps.fallback = p
			continue
		}
		ps.list = append(ps.list, p)
	}
	if ps.fallback == nil {
		ps.fallback = DefaultFallback()
	}
	sort.SliceStable(ps.list, func(i, j int) bool {
		if ps.list[i].Priority != ps.list[j].Priority {
			return ps.list[i].Priority > ps.list[j].Priority
		}
		return ps.list[i].Name < ps.list[j].Name
	})
	return ps, nil
}

// ParseProfile decodes and validates one profile file's content. Errors are
// *yamlx.Error values naming file, line, column and key: every unknown key, value of
// the wrong type and rule violation of the file, joined in order of line.
func ParseProfile(file string, data []byte) (*Profile, error) {
	var p Profile
	doc, err := yamlx.Decode(file, data, &p)
	if doc == nil { // malformed YAML
		return nil, err
	}
	p.File = file
	if err := yamlx.Join(err, p.validate(doc)); err != nil {
		return nil, err
	}
	return &p, nil
}

var reName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// validate checks the profile's rules, compiles Match and defaults Status.Decode and the
// read functions; it returns every violation, joined.
func (p *Profile) validate(doc *yamlx.Doc) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, doc.Errorf(key, format, args...))
	}
	if !reName.MatchString(p.Name) {
		bad("name", "expected a name of 1–64 characters [a-z0-9._-], got %q", p.Name)
	}
	if !reName.MatchString(p.Service) {
		bad("service", "expected a service name of 1–64 characters [a-z0-9._-], got %q", p.Service)
	}
	matchKeys := [4]string{"match.vendor", "match.product_code", "match.product_name", "match.model"}
	compiled := false
	for i, expr := range []string{p.Match.Vendor, p.Match.ProductCode, p.Match.ProductName, p.Match.Model} {
		if expr == "" {
			continue
		}
		compiled = true
		re, err := regexp.Compile(expr)
		if err != nil {
			bad(matchKeys[i], "expected a regular expression: %v", err)
			continue
		}
		p.re[i] = re
	}
	if !p.Fallback && !compiled {
		bad("match", "a profile that is not the fallback needs at least one of vendor, product_code, product_name, model")
	}
	if s := p.Identity.Serial; s != nil {
		if (s.Object == nil) == (s.Registers == nil) {
			bad("identity.serial", "give exactly one of object or registers")
		}
		if s.Object != nil && (*s.Object < 0 || *s.Object > 255) {
			bad("identity.serial.object", "expected an object id 0–255, got %d", *s.Object)
		}
		if s.Registers != nil {
			s.Registers.validate(bad, "identity.serial.registers")
		}
	}
	st := &p.Status
	if st.Decode == "" {
		st.Decode = DecodeNone
	}
	if st.Read == nil && !st.DeviceID {
		bad("status", "give status.read (the registers polled as heartbeat) or status.device_id: true")
	}
	if st.Read != nil {
		st.Read.validate(bad, "status.read")
	}
	switch st.Decode {
	case DecodeNone:
	case DecodeCIA402:
		if st.Read == nil {
			bad("status.decode", "cia402 needs status.read")
			break
		}
		if st.Read.Count < 1 || st.Read.Count > 125 {
			break // reported as status.read.count; offsets cannot be checked
		}
		if st.Statusword < 0 || st.Statusword >= int(st.Read.Count) {
			bad("status.statusword", "expected an offset within status.read (0–%d), got %d", int(st.Read.Count)-1, st.Statusword)
		}
		if st.ErrorCode != nil && (*st.ErrorCode < 0 || *st.ErrorCode >= int(st.Read.Count)) {
			bad("status.error_code", "expected an offset within status.read (0–%d), got %d", int(st.Read.Count)-1, *st.ErrorCode)
		}
	default:
		bad("status.decode", `expected "none" or "cia402", got %q`, st.Decode)
	}
	return yamlx.Join(errs...)
}

// validate checks a register read at key and defaults Function to "holding".
func (r *RegisterRead) validate(bad func(key, format string, args ...any), key string) {
	if r.Function == "" {
		r.Function = "holding"
	}
	if r.Function != "holding" && r.Function != "input" {
		bad(key+".function", `expected "holding" or "input", got %q`, r.Function)
	}
	if r.Count < 1 || r.Count > 125 {
		bad(key+".count", "expected 1–125 registers, got %d", r.Count)
	}
	if int(r.Address)+int(r.Count) > 65536 {
		bad(key, "address %d + count %d runs past register 65535", r.Address, r.Count)
	}
}

// Match returns the first profile (by priority) whose Match accepts the identification
// objects, or the fallback profile. objects may be nil (device without FC 0x2B): only
// the fallback matches then.
func (ps *Profiles) Match(objects map[byte]string) *Profile {
	if objects != nil {
		for _, p := range ps.list {
			if p.matches(objects) {
				return p
			}
		}
	}
	return ps.fallback
}

// All returns the profiles in match order, fallback last.
func (ps *Profiles) All() []*Profile {
	return append(slices.Clone(ps.list), ps.fallback)
}

func (p *Profile) matches(objects map[byte]string) bool {
	ids := [4]byte{modbus.ObjVendorName, modbus.ObjProductCode, modbus.ObjProductName, modbus.ObjModelName}
	for i, re := range p.re {
		if re == nil {
			continue
		}
		v, ok := objects[ids[i]]
		if !ok || !re.MatchString(v) {
			return false
		}
	}
	return true
}
