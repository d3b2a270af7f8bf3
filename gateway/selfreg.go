package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/httpapi"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
	"github.com/rollcall-edge/rollcall/registry"
)

// maxSelfPayload caps a self-registration message taken over MQTT, in bytes.
const maxSelfPayload = 64 << 10

// httpClient is the client name of registrations over the HTTP API (their owner is
// "self:http"; one token, one client).
const httpClient = "http"

// selfReg applies self-registrations (docs/contract.md, "Self-registration") to the
// registry: over MQTT from <prefix>/register/<gateway>/<client>, where the topic's
// client level names the owner (a broker ACL confines each client to its own), and over
// the HTTP API as client "http".
type selfReg struct {
	reg     *registry.Registry
	gateway string
	topics  contract.Topics
	max     int           // self-registered instances at most
	tick    time.Duration // registry Tick period: added to a TTL for the detect budget
	log     *slog.Logger
}

// selfOwnerPrefix starts the registry owner of every self-registered instance:
// "self:mqtt:<client>" over MQTT, "self:http" over the HTTP API, so that an MQTT client
// named http is not the HTTP API's owner.
const selfOwnerPrefix = registry.SelfOwnerPrefix

// Owners of self-registered instances.
func mqttOwner(client string) string { return selfOwnerPrefix + "mqtt:" + client }

const httpOwner = selfOwnerPrefix + "http"

// runMQTT takes self-registrations on the gateway's register topics over a connection
// of its own (client id <mqtt.client_id>-register, the gateway's credentials), until ctx
// ends. Its messages are handled one at a time in arrival order (a client's register,
// renew and deregister must apply in the order it sent them), which the publisher's
// connection does not do. It subscribes at QoS 1 on every connection; a message sent
// while it is not subscribed is lost (a module's next renewal registers it again).
func (s *selfReg) runMQTT(ctx context.Context, po mqtt.PublisherOptions) {
	brokers := po.Brokers
	if len(brokers) == 0 {
		brokers = []string{po.BrokerURL}
	}
	filter := s.topics.RegisterFilter(s.gateway)
	co := mqtt.Session{Brokers: brokers, ClientID: po.ClientID + "-register", CleanSession: true, OrderMatters: true,
		Reconnect: true, Stop: ctx.Done(), Username: po.Username, Password: po.Password, TLSConfig: po.TLSConfig}.Options().
		SetOnConnectHandler(func(c paho.Client) {
			// Not waited for: paho's handler goroutine must not block on the network.
			c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { s.onMessage(m.Topic(), m.Payload()) })
		})
	c := paho.NewClient(co)
	c.Connect() // with Reconnect, paho keeps trying until Disconnect
	<-ctx.Done()
	c.Disconnect(250)
}

// onMessage takes one MQTT message on the register filter.
func (s *selfReg) onMessage(topic string, payload []byte) {
	client, ok := s.topics.ParseRegisterTopic(s.gateway, topic)
	if !ok {
		return
	}
	if len(payload) > maxSelfPayload {
		s.log.Warn("self-registration refused: payload too large", "client", client, "bytes", len(payload), "max", maxSelfPayload)
		return
	}
	var msg contract.SelfRegistration
	if err := json.Unmarshal(payload, &msg); err != nil {
		s.log.Warn("self-registration refused: not a JSON registration", "client", client, "err", err)
		return
	}
	if _, err := s.apply(client, mqttOwner(client), msg); err != nil {
		s.log.Warn("self-registration refused", "client", client, "name", msg.Name, "op", msg.Op, "err", err)
	}
}

// apply carries out one message of client (whose instances belong to owner). A renewal
// of an instance the gateway does not know (it restarted) registers it when the
// message describes it (service, TTL).
func (s *selfReg) apply(client, owner string, msg contract.SelfRegistration) (contract.Record, error) {
	if err := msg.Check(); err != nil {
		return contract.Record{}, err
	}
	id := contract.SelfInstanceID(msg.Identity, s.gateway, client, msg.Name)
	now := time.Now()
	switch msg.Op {
	case contract.OpDeregister:
		err := s.reg.Deregister(id, owner)
		if err == nil {
			s.log.Info("self-registered instance deregistered by its client", "instance", id, "client", client)
		}
		return contract.Record{}, err
	case contract.OpRenew:
		rec, err := s.reg.Renew(id, owner, ttlOf(msg), msg.Status, msg.Note, now)
		if !errors.Is(err, registry.ErrUnknownInstance) || msg.Service == "" || msg.TTLMS == 0 {
			return rec, err
		}
		msg.Op = contract.OpRegister
		if err := msg.Check(); err != nil {
			return contract.Record{}, err
		}
	}
	if _, live := s.reg.Get(id); !live && s.count() >= s.max {
		return contract.Record{}, fmt.Errorf("%w (self_registration.max_instances %d): %s not registered", registry.ErrTooManyInstances, s.max, id)
	}
	ttl := ttlOf(msg)
	rec, err := s.reg.RegisterSelf(registry.Registration{
		ID: id, Service: msg.Service, Profile: "self", Endpoint: msg.Endpoint, Identity: msg.Identity,
		Meta: msg.Meta, DiscoveredBy: []string{"self"}, Owner: owner,
		Check: contract.Check{IntervalMS: ttl.Milliseconds(), TimeoutMS: ttl.Milliseconds(), DetectBudgetMS: (ttl + s.tick).Milliseconds()},
	}, ttl, msg.Status, msg.Note, now)
	if err == nil {
		s.log.Info("self-registered", "instance", id, "client", client, "service", msg.Service, "ttl", ttl)
	}
	return rec, err
}

func ttlOf(msg contract.SelfRegistration) time.Duration {
	return time.Duration(msg.TTLMS) * time.Millisecond
}

// count is the number of live self-registered instances.
func (s *selfReg) count() int {
	return len(s.reg.Select("", func(owner string, _ *contract.Record) bool { return strings.HasPrefix(owner, selfOwnerPrefix) }))
}

// admin returns the HTTP API's registration functions (client "http"), mapping the
// registry's errors to the API's.
func (s *selfReg) admin(a *httpapi.Admin) {
	a.Register = func(msg contract.SelfRegistration) (contract.Record, error) {
		return s.apply(httpClient, httpOwner, msg)
	}
	a.Renew = func(id, status, note string) (contract.Record, error) {
		if status != "" && status != contract.TTLPass && status != contract.TTLWarn && status != contract.TTLFail {
			return contract.Record{}, fmt.Errorf("%w: status %q: expected pass, warn or fail", httpapi.ErrInvalid, status)
		}
		rec, err := s.reg.Renew(id, httpOwner, 0, status, note, time.Now())
		return rec, apiError(err)
	}
	a.Deregister = func(id string) error { return apiError(s.reg.Deregister(id, httpOwner)) }
}

// apiError maps the registry's errors to the HTTP API's (httpapi.ErrNotFound, ...).
func apiError(err error) error {
	switch {
	case errors.Is(err, registry.ErrUnknownInstance):
		return fmt.Errorf("%w: %w", httpapi.ErrNotFound, err)
	case errors.Is(err, registry.ErrNotOwner):
		return fmt.Errorf("%w: %w", httpapi.ErrForbidden, err)
	case errors.Is(err, registry.ErrTooManyInstances), errors.Is(err, registry.ErrRecordTooLarge):
		return fmt.Errorf("%w: %w", httpapi.ErrInvalid, err)
	}
	return err
}

// MaintenanceFile is the file in the state directory that keeps the instances in
// maintenance across restarts (JSON: id → {reason, since, until}).
const MaintenanceFile = "maintenance.json"

// maintenance keeps the registry's maintenance and its file in the state directory.
type maintenance struct {
	reg  *registry.Registry
	path string
	log  *slog.Logger
	mu   sync.Mutex // one change and its save at a time
}

// load applies the file's maintenance (if any) to the registry, skipping what has
// ended. A missing file is none; an unreadable or malformed one is an error naming it.
func (m *maintenance) load(now time.Time) error {
	b, err := os.ReadFile(m.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("maintenance: %w", err)
	}
	var all map[string]contract.MaintenanceInfo
	if err := json.Unmarshal(b, &all); err != nil {
		return fmt.Errorf("maintenance: %s: %w (remove it to end every maintenance)", m.path, err)
	}
	for id, info := range all {
		if !contract.IsSlug(id) || (!info.Until.IsZero() && !info.Until.After(now)) {
			continue
		}
		m.reg.SetMaintenance(id, &info, now)
	}
	return nil
}

// set puts id in maintenance (info) or ends it (nil), persists it, and returns the
// instance's record; an id that is not live is httpapi.ErrNotFound (nothing changes).
func (m *maintenance) set(id string, info *contract.MaintenanceInfo) (contract.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, live := m.reg.Get(id)
	_, kept := m.reg.Maintenance()[id]
	if !live && (info != nil || !kept) {
		// Ending the maintenance of an id that is not live (a device gone for good) is
		// allowed: it would otherwise stay in the file forever.
		return contract.Record{}, fmt.Errorf("%w: %s (not a live instance of this gateway)", httpapi.ErrNotFound, id)
	}
	m.reg.SetMaintenance(id, info, time.Now())
	if err := m.save(); err != nil {
		m.log.Error("maintenance not saved: it ends at the next restart", "file", m.path, "err", err)
	}
	if info != nil {
		m.log.Info("instance in maintenance", "instance", id, "reason", info.Reason, "until", info.Until)
	} else {
		m.log.Info("maintenance ended", "instance", id)
	}
	rec, _ := m.reg.Get(id)
	return rec, nil
}

// save writes the registry's maintenance to the file: a new temporary file in the same
// directory, synced, renamed over it (m.mu held), so a crash leaves the old file or the
// new one, never a mix.
func (m *maintenance) save() error {
	b, err := json.MarshalIndent(m.reg.Maintenance(), "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(m.path), MaintenanceFile+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename: nothing to remove
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), m.path)
}

func maintenancePath(stateDir string) string { return filepath.Join(stateDir, MaintenanceFile) }
