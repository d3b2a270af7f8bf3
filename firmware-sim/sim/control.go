package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
)

// maxControlBody is the largest accepted control API request body, in bytes.
const maxControlBody = 4096

// controlHandler serves the control API (docs/design.md, "Commands"):
//
//	POST /v1/devices/{name}/{unit}/fault  {"mode":"slow","delay":"200ms"} → 204;
//	     name is a bus or TCP listener; the body is a FaultJSON: mode none, silent,
//	     slow (delay), exception (code), garbage, fault or noisy (rate, seed), e.g.
//	     {"mode":"noisy","rate":0.05} or {"mode":"noisy","rate":0.05,"seed":7};
//	     400 {"error":…} for bad input (a rate outside 0–1 among it),
//	     404 {"error":…} for an unknown bus, listener or unit
//	GET  /v1/devices                      → 200, JSON list of DeviceInfo (RTU and TCP)
func (s *Sim) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/devices/{name}/{unit}/fault", s.handleFault)
	mux.HandleFunc("GET /v1/devices", func(w http.ResponseWriter, _ *http.Request) {
		devices := s.Devices()
		if devices == nil {
			devices = []DeviceInfo{}
		}
		writeJSON(w, http.StatusOK, devices)
	})
	return mux
}

func (s *Sim) handleFault(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	unit, err := strconv.Atoi(r.PathValue("unit"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unit must be an integer, got %q", r.PathValue("unit")))
		return
	}
	if s.Drive(name, unit) == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no device at bus or listener %q unit %d", name, unit))
		return
	}
	f, err := decodeFault(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.SetFault(name, unit, f); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, ErrUnknownDevice) {
			status = http.StatusNotFound
		}
		writeError(w, status, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decodeFault decodes a FaultJSON body strictly: mode required; delay (a Go duration)
// only and required with slow; code 1–255 only with exception; rate (0–1) only and
// required with noisy, seed (an unsigned 64-bit integer) only with noisy.
func decodeFault(body io.Reader) (slave.Fault, error) {
	var in struct {
		Mode  *string  `json:"mode"`
		Delay *string  `json:"delay"`
		Code  *int     `json:"code"`
		Rate  *float64 `json:"rate"`
		Seed  *uint64  `json:"seed"`
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return slave.Fault{}, fmt.Errorf("body must be a JSON object such as {\"mode\":\"slow\",\"delay\":\"200ms\"}: %v", err)
	}
	if dec.More() {
		return slave.Fault{}, errors.New("body must hold one JSON object")
	}
	if in.Mode == nil {
		return slave.Fault{}, errors.New("mode is required: " + slave.FaultModeNames)
	}
	mode, err := slave.ParseFaultMode(*in.Mode)
	if err != nil {
		return slave.Fault{}, err
	}
	f := slave.Fault{Mode: mode}
	if in.Delay != nil {
		if mode != slave.FaultSlow {
			return slave.Fault{}, fmt.Errorf("delay is only valid with mode slow, not %s", mode)
		}
		d, err := time.ParseDuration(*in.Delay)
		if err != nil || d <= 0 {
			return slave.Fault{}, fmt.Errorf("delay must be a positive duration such as \"200ms\", got %q", *in.Delay)
		}
		f.Delay = d
	} else if mode == slave.FaultSlow {
		return slave.Fault{}, errors.New("mode slow needs a delay such as \"200ms\"")
	}
	if in.Code != nil {
		if mode != slave.FaultException {
			return slave.Fault{}, fmt.Errorf("code is only valid with mode exception, not %s", mode)
		}
		if *in.Code < 1 || *in.Code > 255 {
			return slave.Fault{}, fmt.Errorf("code must be an exception code from 1 to 255, got %d", *in.Code)
		}
		f.Code = byte(*in.Code)
	}
	switch {
	case in.Rate != nil && mode != slave.FaultNoisy:
		return slave.Fault{}, fmt.Errorf("rate is only valid with mode noisy, not %s", mode)
	case in.Seed != nil && mode != slave.FaultNoisy:
		return slave.Fault{}, fmt.Errorf("seed is only valid with mode noisy, not %s", mode)
	case in.Rate == nil && mode == slave.FaultNoisy:
		return slave.Fault{}, errors.New("mode noisy needs a rate: the probability, 0 to 1, that a reply is corrupted and that a noise burst follows it, e.g. {\"mode\":\"noisy\",\"rate\":0.05}")
	case in.Rate != nil:
		if err := slave.CheckRate(*in.Rate); err != nil {
			return slave.Fault{}, fmt.Errorf("rate must be a probability from 0 to 1, e.g. 0.05, got %v", *in.Rate)
		}
		f.Rate = *in.Rate
	}
	if in.Seed != nil {
		f.Seed = *in.Seed
	}
	return f, f.Validate()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
