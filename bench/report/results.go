// Package report turns the simulator's results into the comparison's
// documents: docs/benchmarks.md, its SVG pictures, a JSON file, and the
// headline table for the README.
package report

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/tokenkeeper/tokenkeeper/bench/sim"
)

// Results is everything one regeneration measured. It is written as JSON.
type Results struct {
	Date        string        `json:"date"`
	Command     string        `json:"command"`
	Environment Environment   `json:"environment"`
	Libraries   []Library     `json:"libraries"`
	Seeds       []uint64      `json:"seeds"`
	Traces      []TraceResult `json:"traces"`
	HotPath     []HotResult   `json:"hot_path"`

	// Variants is tokenkeeper with other settings, on the same traces.
	Variants []Variant `json:"tokenkeeper_variants"`

	StampedeConfig sim.StampedeConfig   `json:"stampede_config"`
	Stampede       []sim.StampedeResult `json:"stampede"`
	HerdConfig     HerdInfo             `json:"herd_config"`
	Herd           []sim.HerdResult     `json:"herd"`

	// Timelines are the pictures' data (not written to JSON).
	Timelines []Timeline `json:"-"`
}

// Environment is where the numbers were taken.
type Environment struct {
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	CPU       string `json:"cpu"`
}

// Library is one contender as configured.
type Library struct {
	Name    string `json:"name"`
	Module  string `json:"module"`
	Version string `json:"version"`
	Config  string `json:"config"`
}

// TraceResult is one trace, pooled over the seeds.
type TraceResult struct {
	Name        string        `json:"name"`
	Title       string        `json:"title"`
	Description string        `json:"description"`
	Days        int           `json:"days"`
	Runs        int           `json:"runs"`
	Requests    int           `json:"requests_per_run"`
	Sessions    int           `json:"user_sessions_per_run"`
	Outages     []sim.Outage  `json:"outages_seed1"`
	Summaries   []sim.Summary `json:"summaries"`
}

// Variant is tokenkeeper with other settings: one summary per trace, in the
// order of Results.Traces.
type Variant struct {
	Name      string        `json:"name"`
	Config    string        `json:"config"`
	Summaries []sim.Summary `json:"summaries"`
}

// HotResult is the cost of handing out a valid token.
type HotResult struct {
	Library        string  `json:"library"`
	SerialNs       float64 `json:"serial_ns_per_op"`
	SerialAllocs   int64   `json:"serial_allocs_per_op"`
	SerialBytes    int64   `json:"serial_bytes_per_op"`
	ParallelNs     float64 `json:"parallel_ns_per_op"`
	ParallelAllocs int64   `json:"parallel_allocs_per_op"`
	ParallelBytes  int64   `json:"parallel_bytes_per_op"`
}

// HerdInfo describes the herd in the JSON file.
type HerdInfo struct {
	Tokens     int     `json:"tokens"`
	EveryMs    sim.Dur `json:"every_ms"`
	DurationMs sim.Dur `json:"duration_ms"`
}

// Timeline is one simulated day of one trace, for the pictures.
type Timeline struct {
	Trace    string
	Title    string
	Day      int // day index from the Monday
	Sessions []sim.Interval
	Requests []sim.Request
	Outages  []sim.Outage
	Runs     []*sim.TraceRun // one per library, in table order
}

// WriteJSON writes r to path, indented.
func WriteJSON(path string, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
