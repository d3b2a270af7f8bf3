package httpapi

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// MaxAdminBody caps the body of a write request (a self-registration, a renewal, a
// maintenance), in bytes: beyond it the answer is 413.
const MaxAdminBody = 64 << 10

// Errors the Admin functions return (wrapped) to choose the answer's status: 404 for
// ErrNotFound, 403 for ErrForbidden, 400 for ErrInvalid; anything else is 500.
var (
	ErrNotFound  = errors.New("no such instance")
	ErrForbidden = errors.New("not yours")
	ErrInvalid   = errors.New("invalid request")
)

// Admin is the write side of the API, each endpoint on only when its function is set,
// all behind a bearer token (RFC 6750 §2.1: "Authorization: Bearer <token>"); a request
// without it, or with another token, gets 401.
//
//	POST   /v1/instances                  self-registration (contract.SelfRegistration, op register or empty) → 201, the record
//	PUT    /v1/instances/{id}/ttl         renewal {"status":"pass|warn|fail","note":"…"} → 200, the record
//	DELETE /v1/instances/{id}             deregistration → 204
//	PUT    /v1/instances/{id}/maintenance {"reason":"…","until":"<RFC 3339>"} (until optional) → 200, the record
//	DELETE /v1/instances/{id}/maintenance end of maintenance → 204
//
// Errors are JSON {"error": "…"}: 400 (invalid body), 403, 404, 413 (body over
// MaxAdminBody).
type Admin struct {
	// Token is the bearer token; required (an empty token disables every endpoint).
	Token string
	// Register, Renew and Deregister handle self-registration.
	Register   func(r contract.SelfRegistration) (contract.Record, error)
	Renew      func(id, status, note string) (contract.Record, error)
	Deregister func(id string) error
	// Maintenance puts id in maintenance (m) or ends it (m nil) and returns its record.
	Maintenance func(id string, m *contract.MaintenanceInfo) (contract.Record, error)
}

// routes adds the admin endpoints to mux.
func (a *Admin) routes(mux *http.ServeMux) {
	if a == nil || a.Token == "" {
		return
	}
	if a.Register != nil {
		mux.HandleFunc("POST /v1/instances", a.auth(a.register))
	}
	if a.Renew != nil {
		mux.HandleFunc("PUT /v1/instances/{id}/ttl", a.auth(a.renew))
	}
	if a.Deregister != nil {
		mux.HandleFunc("DELETE /v1/instances/{id}", a.auth(a.deregister))
	}
	if a.Maintenance != nil {
		mux.HandleFunc("PUT /v1/instances/{id}/maintenance", a.auth(a.maintenance))
		mux.HandleFunc("DELETE /v1/instances/{id}/maintenance", a.auth(a.maintenance))
	}
}

// auth checks the bearer token (in constant time) before h.
func (a *Admin) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rollcall"`)
			writeJSONStatus(w, http.StatusUnauthorized, map[string]string{"error": "a bearer token is required (http.admin_token_file)"})
			return
		}
		h(w, r)
	}
}

// decode reads a JSON body of at most MaxAdminBody bytes into v; unknown fields are
// refused.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		code := http.StatusBadRequest
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			code = http.StatusRequestEntityTooLarge
		}
		writeJSONStatus(w, code, map[string]string{"error": "body: " + err.Error()})
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeJSONStatus(w, http.StatusBadRequest, map[string]string{"error": "body: more than one JSON value"})
		return false
	}
	return true
}

// fail answers err with the status its kind says.
func fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrForbidden):
		code = http.StatusForbidden
	case errors.Is(err, ErrInvalid), errors.Is(err, contract.ErrBadRegistration):
		code = http.StatusBadRequest
	}
	writeJSONStatus(w, code, map[string]string{"error": err.Error()})
}

func (a *Admin) register(w http.ResponseWriter, r *http.Request) {
	var req contract.SelfRegistration
	if !decode(w, r, &req) {
		return
	}
	if req.Op == "" {
		req.Op = contract.OpRegister
	}
	if req.Op != contract.OpRegister {
		fail(w, fmt.Errorf("%w: op %q: POST /v1/instances registers (renew: PUT /v1/instances/<id>/ttl)", ErrInvalid, req.Op))
		return
	}
	rec, err := a.Register(req)
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Location", "/v1/instances/"+rec.ID)
	writeJSONStatus(w, http.StatusCreated, rec)
}

func (a *Admin) renew(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Status string `json:"status"`
		Note   string `json:"note"`
	}
	if !decode(w, r, &req) {
		return
	}
	rec, err := a.Renew(r.PathValue("id"), req.Status, req.Note)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, rec)
}

func (a *Admin) deregister(w http.ResponseWriter, r *http.Request) {
	if err := a.Deregister(r.PathValue("id")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Admin) maintenance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if r.Method == http.MethodDelete {
		if _, err := a.Maintenance(id, nil); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var req struct {
		Reason string        `json:"reason"`
		Until  contract.Time `json:"until"`
	}
	if !decode(w, r, &req) {
		return
	}
	now := time.Now()
	switch {
	case strings.TrimSpace(req.Reason) == "":
		fail(w, fmt.Errorf("%w: a reason is required", ErrInvalid))
		return
	case !req.Until.IsZero() && !req.Until.After(now):
		fail(w, fmt.Errorf("%w: until %s is not in the future", ErrInvalid, req.Until.Format(time.RFC3339)))
		return
	}
	rec, err := a.Maintenance(id, &contract.MaintenanceInfo{Reason: req.Reason, Since: contract.Time{Time: now}, Until: req.Until})
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, rec)
}
