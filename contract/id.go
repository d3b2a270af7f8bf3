package contract

import "strconv"

// UnknownVendor stands for the vendor in an instance id when a device reports a serial
// number but no vendor name.
const UnknownVendor = "unknown"

// InstanceID is the one rule for the "id" of an instance record (docs/contract.md,
// "Instance record"), stable across gateway restarts and rediscovery:
//
//   - when the module reports a serial number: Slug(<vendor>-<serial>), with vendor
//     UnknownVendor when it gave none, so the same drive keeps its id whichever bus,
//     address or gateway finds it;
//   - otherwise Slug(<gateway>-<local>), where local names the module within the
//     gateway: "<bus or host>-u<unit>" for a Modbus device (see UnitLocal), the mDNS
//     instance name for a module found over DNS-SD.
//
// The result is always a slug (IsSlug).
func InstanceID(id Identity, gateway, local string) string {
	if id.Serial != "" {
		vendor := id.Vendor
		if vendor == "" {
			vendor = UnknownVendor
		}
		return Slug(vendor + "-" + id.Serial)
	}
	return Slug(gateway + "-" + local)
}

// UnitLocal returns the local part of a Modbus device's fallback instance id:
// "<scope>-u<unit>", where scope is the configured bus name (RTU) or host (TCP) and
// unit the Modbus unit ID (0–255).
func UnitLocal(scope string, unit int) string {
	return scope + "-u" + strconv.Itoa(unit)
}
