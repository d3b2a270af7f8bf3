package client

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// cacheFile is the JSON document of Options.CacheFile.
type cacheFile struct {
	Schema    string           `json:"schema"` // CacheSchema
	Prefix    string           `json:"prefix"` // topic prefix the catalog was read from
	Saved     time.Time        `json:"saved"`
	Gateways  []cachedGateway  `json:"gateways"`
	Instances []cachedInstance `json:"instances"`
}

type cachedGateway struct {
	Topic     string                 `json:"topic"`
	Confirmed time.Time              `json:"confirmed"` // last known current
	Record    contract.GatewayRecord `json:"record"`
}

type cachedInstance struct {
	Topic     string          `json:"topic"`
	Confirmed time.Time       `json:"confirmed"` // last known current
	Record    contract.Record `json:"record"`
}

// loadCache reads Options.CacheFile into the (empty) catalog; problems are logged.
func (c *Client) loadCache() {
	path := c.o.CacheFile
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		c.log.Info("client: no cache file yet", "path", path)
		return
	}
	if err != nil {
		c.log.Warn("client: cache file unreadable; starting without it", "path", path, "err", err)
		return
	}
	var f cacheFile
	if err := json.Unmarshal(b, &f); err != nil {
		c.log.Warn("client: cache file malformed; starting without it", "path", path, "err", err)
		return
	}
	if f.Schema != CacheSchema || f.Prefix != c.o.Topics.Root() {
		c.log.Warn("client: cache file is of another schema or topic prefix; starting without it",
			"path", path, "schema", f.Schema, "prefix", f.Prefix)
		return
	}
	t := c.o.Topics
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range f.Gateways {
		gw, ok := t.ParseGatewayStatusTopic(g.Topic)
		if !ok || contract.Slug(g.Record.Gateway) != gw || (g.Record.State != GatewayOnline && g.Record.State != GatewayOffline) {
			c.log.Warn("client: cache file: gateway entry skipped", "path", path, "topic", g.Topic)
			continue
		}
		rec := g.Record
		c.gateways[gw] = &gwEntry{topic: g.Topic, rec: &rec, confirmed: g.Confirmed, cached: true}
	}
	for _, ci := range f.Instances {
		svc, gw, inst, ok := t.ParseInstanceTopic(ci.Topic)
		r := ci.Record
		if !ok || r.Schema != contract.Schema || contract.Slug(r.Service) != svc || contract.Slug(r.Gateway) != gw || contract.Slug(r.ID) != inst {
			c.log.Warn("client: cache file: instance entry skipped", "path", path, "topic", ci.Topic)
			continue
		}
		if len(c.services) > 0 && !c.services[svc] {
			continue
		}
		c.entries[ci.Topic] = &entry{topic: ci.Topic, svc: svc, gw: gw, inst: inst, rec: &r, confirmed: ci.Confirmed, cached: true}
	}
	c.log.Info("client: catalog read from the cache file; stale until a broker confirms it",
		"path", path, "instances", len(c.entries), "gateways", len(c.gateways), "saved", f.Saved)
}

// snapshotLocked builds the cache document at now.
func (c *Client) snapshotLocked(now time.Time) cacheFile {
	f := cacheFile{Schema: CacheSchema, Prefix: c.o.Topics.Root(), Saved: now,
		Gateways: []cachedGateway{}, Instances: []cachedInstance{}}
	for _, gw := range sortedKeys(c.gateways) {
		g := c.gateways[gw]
		conf := g.confirmed
		if c.liveLocked(g.gen) {
			conf = now
		}
		f.Gateways = append(f.Gateways, cachedGateway{Topic: g.topic, Confirmed: conf, Record: *g.rec})
	}
	for _, e := range c.sortedLocked("") {
		conf := e.confirmed
		if c.liveLocked(e.gen) {
			conf = now
		}
		f.Instances = append(f.Instances, cachedInstance{Topic: e.topic, Confirmed: conf, Record: *e.rec})
	}
	return f
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// saveCache writes the catalog to Options.CacheFile atomically: a temporary file in the
// same directory, synced, then renamed over the old one (and the directory synced).
func (c *Client) saveCache() error {
	c.mu.Lock()
	f := c.snapshotLocked(time.Now())
	c.dirty = false
	c.mu.Unlock()
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return err
	}
	if err := writeAtomic(c.o.CacheFile, b); err != nil {
		c.mu.Lock()
		c.dirty = true // try again next time
		c.mu.Unlock()
		return err
	}
	return nil
}

func writeAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename durable; best effort
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// saveLoop writes the cache file at most every CacheInterval while the catalog changed,
// until ctx ends (Run writes it once more then).
func (c *Client) saveLoop(ctx context.Context) {
	tick := time.NewTicker(c.o.CacheInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		dirty := c.dirty
		c.mu.Unlock()
		if !dirty {
			continue
		}
		if err := c.saveCache(); err != nil {
			c.log.Error("client: writing the cache file failed", "path", c.o.CacheFile, "err", err)
		}
	}
}
