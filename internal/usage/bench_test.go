package usage

import (
	"testing"
	"time"
)

func BenchmarkRecord(b *testing.B) {
	m := New(Config{Location: india})
	now := ns(wed)
	m.Record(now)
	b.ReportAllocs()
	for b.Loop() {
		m.Record(now)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	m := New(Config{Location: india})
	now := ns(wed)
	m.Record(now)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Record(now)
		}
	})
}

// BenchmarkRecordNewSecond measures the once-a-second slow path.
func BenchmarkRecordNewSecond(b *testing.B) {
	m := New(Config{Location: india})
	now := ns(wed)
	b.ReportAllocs()
	for b.Loop() {
		now += int64(time.Second)
		m.Record(now)
	}
}

func BenchmarkRoll(b *testing.B) {
	b.Run("same slot", func(b *testing.B) {
		m := New(Config{Location: india})
		now := ns(wed)
		m.Roll(now)
		b.ReportAllocs()
		for b.Loop() {
			m.Roll(now)
		}
	})
	b.Run("next slot", func(b *testing.B) {
		m := New(Config{Location: india})
		now := ns(wed)
		m.Roll(now)
		b.ReportAllocs()
		for b.Loop() {
			now += int64(SlotWidth)
			m.Roll(now)
		}
	})
	b.Run("a week later", func(b *testing.B) {
		m := New(Config{Location: india})
		now := ns(wed)
		m.Roll(now)
		b.ReportAllocs()
		for b.Loop() {
			now += int64(7 * 24 * time.Hour)
			m.Roll(now)
		}
	})
}

func BenchmarkPredict(b *testing.B) {
	m := New(Config{Location: india})
	m.Roll(ns(wed))
	m.Roll(ns(wed.Add(time.Hour)))
	b.ReportAllocs()
	for b.Loop() {
		m.Predict(wed)
	}
}
