package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rollcall-edge/rollcall/contract"
)

// ReadBackOptions configures ReadBack.
type ReadBackOptions struct {
	// BrokerURL is the broker; Brokers, if set, several of one cluster, tried in order
	// (see PublisherOptions.Brokers).
	BrokerURL string
	Brokers   []string
	// ClientID of the short-lived read-back session; default "rollcall-<gateway>-readback".
	ClientID           string
	Topics             contract.Topics
	Gateway            string // whose subtree to read
	Username, Password string
	TLSConfig          *tls.Config
	Logger             *slog.Logger
	// Timeout bounds the read-back's traffic (connect, subscribe, the marker's round
	// trip); decoding and verifying what came back follow it. Default 5 s.
	Timeout time.Duration
	// StatusOnly reads the gateway's status record and not its catalog subtree
	// (ReadBackResult.Records stays empty).
	StatusOnly bool
	// Keys, if set, are the gateway's own keys: an instance record that does not verify
	// with them (contract.KeyRing.Verify) is returned with that error, not as a record.
	Keys *contract.KeyRing
}

// Retained is one retained message read back from a gateway's catalog subtree: its
// topic and either its record or why it is not a valid record of that topic.
type Retained struct {
	Topic  string
	Record *contract.Record // nil when Err is set
	// Err: the payload does not decode (contract.DecodeRecord's errors), the record
	// is not the one its topic names (service, gateway and id slugs must match;
	// wraps contract.ErrInvalidRecord), or, with ReadBackOptions.Keys, its signature
	// does not verify (contract.ErrUnsigned, ErrBadSignature).
	Err error
	// Unverified is, when Err is a signature error, the record the payload holds if it
	// decodes, unauthenticated: good for nothing but its revision (a floor).
	Unverified *contract.Record
}

// ReadBackResult is what ReadBack found.
type ReadBackResult struct {
	// Records: one per non-empty retained message on an instance topic of the gateway.
	Records []Retained
	// Status is the gateway's retained status record, nil when there is none (or it is
	// malformed).
	Status *contract.GatewayRecord
}

// ReadBack returns what the broker retains in a gateway's catalog subtree (what an
// earlier run of it, or anyone else, left there; docs/contract.md, "Gateway start"):
// one Retained per non-empty retained message on an instance topic of the gateway, the
// malformed ones included so the caller can clear them, and its retained status record.
// It subscribes (QoS 0) to Topics.GatewayCatalogFilter and Topics.GatewayStatus with a
// clean session, then publishes a non-retained marker
// {"readback":"<random nonce>"} to Topics.ReadBackMarker on the same session: the
// broker sends retained messages when it handles the SUBSCRIBE, so they arrive before
// the marker, which ends the read. It fails when the broker cannot be reached or the
// marker does not come back within Timeout.
func ReadBack(ctx context.Context, o ReadBackOptions) (*ReadBackResult, error) {
	if len(o.Brokers) == 0 {
		o.Brokers = []string{o.BrokerURL}
	}
	for _, b := range o.Brokers {
		if _, err := parseBrokerURL(b); err != nil {
			return nil, err
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.ClientID == "" {
		o.ClientID = "rollcall-" + contract.Slug(o.Gateway) + "-readback"
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	nonceB := make([]byte, 8)
	_, _ = rand.Read(nonceB)
	nonce := `{"readback":"` + hex.EncodeToString(nonceB) + `"}`
	marker := o.Topics.ReadBackMarker(o.Gateway)
	catalog := o.Topics.GatewayCatalogFilter(o.Gateway)
	status := o.Topics.GatewayStatus(o.Gateway)

	// The handler only keeps what it is given: paho calls it in arrival order from the
	// goroutine that reads the connection (OrderMatters), so decoding and verifying
	// there would hold up the marker's PUBACK behind thousands of signature checks and
	// make the timeout a measure of the CPU, not of the broker. They happen after the
	// marker, outside the timeout.
	type message struct {
		topic   string
		payload []byte
	}
	var mu sync.Mutex
	var got []message
	done := make(chan struct{})
	var once sync.Once
	handler := func(_ paho.Client, m paho.Message) {
		if m.Topic() == marker {
			if string(m.Payload()) == nonce {
				once.Do(func() { close(done) })
			}
			return
		}
		if !m.Retained() || len(m.Payload()) == 0 {
			return
		}
		mu.Lock()
		got = append(got, message{m.Topic(), m.Payload()})
		mu.Unlock()
	}
	opts := Session{Brokers: o.Brokers, ClientID: o.ClientID, CleanSession: true, OrderMatters: true,
		Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig,
		Timing: Timing{ConnectTimeout: o.Timeout}}.Options().SetDefaultPublishHandler(handler)
	c := paho.NewClient(opts)
	tok := c.Connect()
	if err := await(ctx, tok); err != nil {
		StopClient(c, tok, 0, time.Second)
		return nil, fmt.Errorf("mqtt: read-back connect %s: %w", strings.Join(o.Brokers, ","), err)
	}
	defer StopClient(c, tok, 100, time.Second)
	// QoS 0, every filter alike: a broker sends the retained records of a SUBSCRIBE all
	// at once, and Mosquitto 2.0 (default max_inflight_messages 20,
	// max_queued_messages 1000) drops QoS 1 deliveries beyond its per-client queue,
	// retained ones included, where QoS 0 ones are written out in order; the marker
	// then stays behind the records (docs/contract.md, "Consumers").
	filters := map[string]byte{catalog: 0, status: 0, marker: 0}
	if o.StatusOnly {
		delete(filters, catalog)
	}
	subTok := c.SubscribeMultiple(filters, handler)
	if err := await(ctx, subTok); err != nil {
		return nil, fmt.Errorf("mqtt: read-back subscribe: %w", err)
	}
	if err := subscribeError(subTok); err != nil { // a SUBACK may refuse (e.g. an ACL)
		return nil, fmt.Errorf("mqtt: read-back subscribe: %w", err)
	}
	if err := await(ctx, c.Publish(marker, 1, false, nonce)); err != nil {
		return nil, fmt.Errorf("mqtt: read-back marker: %w", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("mqtt: read-back: marker not received within %v", o.Timeout)
	}
	mu.Lock()
	msgs := got
	got = nil // a late duplicate delivery appends to nothing we read
	mu.Unlock()
	res := &ReadBackResult{}
	for _, m := range msgs {
		if m.topic == status {
			if g, err := contract.DecodeGatewayRecord(m.payload); err == nil && g.Gateway == o.Gateway {
				res.Status = g
			}
			continue
		}
		if r, ok := o.retained(m.topic, m.payload); ok {
			res.Records = append(res.Records, r)
		}
	}
	return res, nil
}

// retained decodes (and with o.Keys verifies) one retained message on topic; ok is
// false when topic is not an instance topic of o.Gateway (the catalog filter matches
// deeper levels too).
func (o ReadBackOptions) retained(topic string, payload []byte) (Retained, bool) {
	svc, gw, inst, ok := o.Topics.ParseInstanceTopic(topic)
	if !ok || gw != contract.Slug(o.Gateway) {
		return Retained{}, false
	}
	r := Retained{Topic: topic}
	body := payload
	var err error
	if o.Keys != nil {
		body, err = o.Keys.Verify(gw, contract.KindInstance, body)
	}
	var rec *contract.Record
	if err == nil {
		rec, err = contract.DecodeRecord(body)
	} else if u, uerr := contract.DecodeRecord(payload); uerr == nil && u.Gateway == o.Gateway && contract.Slug(u.ID) == inst {
		r.Unverified = u
	}
	switch {
	case err != nil:
		r.Err = err
	case rec.Gateway != o.Gateway || contract.Slug(rec.Service) != svc || contract.Slug(rec.ID) != inst:
		r.Err = fmt.Errorf("%w: record of %s/%s/%s on this topic", contract.ErrInvalidRecord, rec.Service, rec.Gateway, rec.ID)
	default:
		r.Record = rec
	}
	return r, true
}
