package usage

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

// Fuzz operations: each is an opcode byte and an 8-byte little-endian value.
// Most steps are small, so that inputs explore seconds and slots rather than
// spending their time folding weeks; opJump and the absolute operations reach
// the rest of the int64 range.
const (
	opRecord      = iota // clock += int16(value) ms, then Record
	opRoll               // clock += int16(value) s, then Roll
	opJump               // clock += int32(value) ms
	opRecordAt           // Record at value
	opRollAt             // Roll at value
	opSetClock           // clock = value, then Record and Roll there
	opPredictRead        // Timeline(clock, int16(value)) and LastActivity
	numOps
)

const (
	opSize = 9
	// maxOps bounds an input's work: a Roll can fold a week of slots, and
	// minimising a long input runs it thousands of times.
	maxOps = 64
)

func encodeOps(ops ...any) []byte {
	var b []byte
	for i := 0; i < len(ops); i += 2 {
		b = append(b, byte(ops[i].(int)))
		b = binary.LittleEndian.AppendUint64(b, uint64(ops[i+1].(int64)))
	}
	return b
}

func FuzzRecordRoll(f *testing.F) {
	base := ns(wed)
	f.Add(encodeOps(opRecord, int64(0), opRoll, int64(5*60)))
	f.Add(encodeOps(opRecord, int64(1), opRecord, int64(1000), opRecord, int64(-20_000), opRoll, int64(-3600), opJump, int64(1<<31-1), opRoll, int64(1)))
	f.Add(encodeOps(opSetClock, base, opRecord, int64(-11_000), opRecord, int64(30_000), opRoll, int64(900), opPredictRead, int64(60)))
	f.Add(encodeOps(opRecordAt, int64(math.MinInt64), opRollAt, int64(math.MaxInt64), opRecordAt, int64(math.MaxInt64), opRollAt, int64(math.MinInt64)))
	f.Add(encodeOps(opSetClock, int64(-1), opRoll, int64(-1), opPredictRead, int64(-5)))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := New(Config{Location: nepal, DayDecay: 0.6, WeekDecay: 0.3})
		clock := base
		check := func() {
			if p, ok := m.Predict(time.Unix(0, clock)); !(p >= 0 && p <= 1) || (!ok && p != 0) {
				t.Fatalf("Predict(%d) = %v, %v", clock, p, ok)
			}
		}
		data = data[:min(len(data), maxOps*opSize)]
		for ; len(data) >= opSize; data = data[opSize:] {
			v := int64(binary.LittleEndian.Uint64(data[1:opSize]))
			switch data[0] % numOps {
			case opRecord:
				clock = addSat(clock, int64(int16(v))*int64(time.Millisecond))
				m.Record(clock)
			case opRoll:
				clock = addSat(clock, int64(int16(v))*int64(time.Second))
				m.Roll(clock)
			case opJump:
				clock = addSat(clock, int64(int32(v))*int64(time.Millisecond))
			case opRecordAt:
				m.Record(v)
			case opRollAt:
				m.Roll(v)
			case opSetClock:
				clock = v
				m.Record(clock)
				m.Roll(clock)
			case opPredictRead:
				m.Timeline(clock, int(int16(v)))
				m.LastActivity()
			}
			check()
		}
		for i, n := range m.Timeline(clock, ringMinutes) {
			if n < 0 || n > 60 {
				t.Fatalf("Timeline[%d] = %d, want 0..60", i, n)
			}
		}
		m.mu.RLock()
		defer m.mu.RUnlock()
		for i, v := range m.day {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("day[%d] = %v, want 0..1", i, v)
			}
		}
		for i, v := range m.week {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("week[%d] = %v, want 0..1", i, v)
			}
		}
	})
}

// addSat returns a+b, saturated to the int64 range.
func addSat(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}
