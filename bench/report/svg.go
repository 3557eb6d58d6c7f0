package report

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/bench/sim"
)

// Colours shared by the pictures.
const (
	colSession = "#dbe9f6"
	colUser    = "#1f4e79"
	colSync    = "#8a8a8a"
	colOutage  = "#f8d7d3"
	colOK      = "#2e8b57"
	colFailed  = "#e08a00"
	colTimeout = "#b22222"
	colWait    = "#d62728"
	colExpired = "#7b3fa0"
	colError   = "#000000"
	colMain    = "#1f77b4"
	colOther   = "#9fb3c8"
)

type svg struct{ b bytes.Buffer }

func (s *svg) f(format string, a ...any) { fmt.Fprintf(&s.b, format, a...) }

func esc(s string) string { return html.EscapeString(s) }

func (s *svg) open(w, h int) {
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", w, h, w, h)
	s.f(`<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", w, h)
}

func (s *svg) close() []byte {
	s.f("</svg>\n")
	return s.b.Bytes()
}

// TimelineSVG draws one day of a trace: the user's sessions and requests on
// top, then one row per library with its calls to the identity provider,
// the requests that waited, the errors and the expired tokens handed out.
// The window shown is [from, to) hours of the day.
func TimelineSVG(tl Timeline, from, to int) []byte {
	const (
		width  = 1280
		left   = 270
		right  = 20
		top    = 56
		rowH   = 34
		userH  = 46
		legend = 70
	)
	plotW := float64(width - left - right)
	dayStart := time.Duration(tl.Day) * 24 * time.Hour
	t0 := dayStart + time.Duration(from)*time.Hour
	t1 := dayStart + time.Duration(to)*time.Hour
	x := func(t time.Duration) float64 {
		return float64(left) + plotW*float64(t-t0)/float64(t1-t0)
	}
	inDay := func(t time.Duration) bool { return t >= t0 && t < t1 }
	height := top + userH + rowH*len(tl.Runs) + legend
	var s svg
	s.open(width, height)
	s.f(`<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(tl.Title))
	bottom := top + userH + rowH*len(tl.Runs)

	// Sessions behind everything, outages over them.
	for _, iv := range tl.Sessions {
		a, b := max(iv.Start, t0), min(iv.End, t1)
		if a < b {
			s.f(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" opacity="0.7"/>`+"\n", x(a), top, max(x(b)-x(a), 1), bottom-top, colSession)
		}
	}
	for _, o := range tl.Outages {
		a, b := max(o.Start, t0), min(o.End, t1)
		if a < b {
			s.f(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" opacity="0.6"/>`+"\n", x(a), top, x(b)-x(a), bottom-top, colOutage)
			s.f(`<text x="%.1f" y="%d" font-size="10" fill="%s">outage: %s</text>`+"\n", x(a), top-4, colTimeout, esc(o.Mode.String()))
		}
	}
	// Hour grid.
	for h := from; h <= to; h++ {
		xx := x(dayStart + time.Duration(h)*time.Hour)
		s.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#cccccc" stroke-width="0.5"/>`+"\n", xx, top-14, xx, bottom)
		s.f(`<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#555555">%02d:00</text>`+"\n", xx, top-16, h%24)
	}
	// Markers closer than a pixel to one already drawn add nothing.
	seen := map[[3]int]bool{}
	first := func(row, kind int, xx float64) bool {
		k := [3]int{row, kind, int(xx)}
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	}
	// User row.
	rowLabel := "user sessions and requests"
	if len(tl.Sessions) == 0 {
		rowLabel = "steady load (requests not drawn)"
	}
	s.f(`<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, top+userH/2+4, esc(rowLabel))
	for _, r := range tl.Requests {
		if !inDay(r.At) {
			continue
		}
		xx := x(r.At)
		if !first(-1, int(r.Kind), xx) {
			continue
		}
		switch r.Kind {
		case sim.User:
			s.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="0.6"/>`+"\n", xx, top+6, xx, top+userH-16, colUser)
		case sim.Sync:
			s.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="1"/>`+"\n", xx, top+userH-12, xx, top+userH-4, colSync)
		}
	}
	// Library rows.
	for i, run := range tl.Runs {
		y := top + userH + i*rowH
		s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999999" stroke-width="0.5"/>`+"\n", left, y, width-right, y)
		weight := "normal"
		if strings.HasPrefix(run.Contender, "tokenkeeper") {
			weight = "bold"
		}
		s.f(`<text x="%d" y="%d" text-anchor="end" font-weight="%s">%s</text>`+"\n", left-8, y+rowH/2+4, weight, esc(run.Contender))
		for _, c := range run.Calls {
			if !inDay(c.Start) {
				continue
			}
			col := colOK
			switch c.Outcome {
			case sim.Failed:
				col = colFailed
			case sim.TimedOut, sim.Canceled:
				col = colTimeout
			}
			xx := x(c.Start)
			if !first(i, 10+int(c.Outcome), xx) {
				continue
			}
			s.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="1.6"/>`+"\n", xx, y+3, xx, y+rowH/2, col)
		}
		for _, m := range run.Waits {
			if !inDay(m.At) {
				continue
			}
			if !first(i, 20+int(math.Log10(float64(m.Wait)/1e6+1)), x(m.At)) {
				continue
			}
			r := 1.5 + math.Max(0, math.Log10(float64(m.Wait)/1e6)) // 1 ms: 1.5 px; 1 s: 4.5 px
			s.f(`<circle cx="%.1f" cy="%d" r="%.1f" fill="%s" fill-opacity="0.6"/>`+"\n", x(m.At), y+rowH*3/4, r, colWait)
		}
		for _, m := range run.Expired {
			if !inDay(m.At) {
				continue
			}
			xx, yy := x(m.At), float64(y+rowH*3/4)
			if !first(i, 30, xx) {
				continue
			}
			s.f(`<path d="M%.1f %.1f l3 3 l-3 3 l-3 -3 z" fill="%s"/>`+"\n", xx, yy-3, colExpired)
		}
		for _, m := range run.Errors {
			if !inDay(m.At) {
				continue
			}
			xx, yy := x(m.At), float64(y+rowH*3/4)
			if !first(i, 40, xx) {
				continue
			}
			s.f(`<path d="M%.1f %.1f l5 5 m0 -5 l-5 5" stroke="%s" stroke-width="1"/>`+"\n", xx-2.5, yy-2.5, colError)
		}
	}
	s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999999" stroke-width="0.5"/>`+"\n", left, bottom, width-right, bottom)

	// Legend.
	ly := bottom + 24
	items := []struct {
		draw  func(x, y int)
		label string
	}{
		{func(x, y int) {
			s.f(`<rect x="%d" y="%d" width="14" height="10" fill="%s"/>`, x, y-9, colSession)
		}, "user session"},
		{func(x, y int) {
			s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`, x+6, y-10, x+6, y, colUser)
		}, "user request"},
		{func(x, y int) {
			s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5"/>`, x+6, y-10, x+6, y, colSync)
		}, "background sync"},
		{func(x, y int) {
			s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`, x+6, y-10, x+6, y, colOK)
		}, "refresh (IdP call) ok"},
		{func(x, y int) {
			s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`, x+6, y-10, x+6, y, colFailed)
		}, "failed"},
		{func(x, y int) {
			s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`, x+6, y-10, x+6, y, colTimeout)
		}, "timed out"},
		{func(x, y int) {
			s.f(`<circle cx="%d" cy="%d" r="4" fill="%s" fill-opacity="0.6"/>`, x+6, y-5, colWait)
		}, "request waited (size: log of wait)"},
		{func(x, y int) {
			s.f(`<path d="M%d %d l5 5 m0 -5 l-5 5" stroke="%s"/>`, x+3, y-8, colError)
		}, "error to caller"},
		{func(x, y int) {
			s.f(`<path d="M%d %d l3 3 l-3 3 l-3 -3 z" fill="%s"/>`, x+6, y-8, colExpired)
		}, "expired token handed out"},
		{func(x, y int) {
			s.f(`<rect x="%d" y="%d" width="14" height="10" fill="%s"/>`, x, y-9, colOutage)
		}, "IdP outage"},
	}
	lx := 20
	for i, it := range items {
		if i == 6 {
			lx, ly = 20, ly+22
		}
		it.draw(lx, ly)
		s.f(`<text x="%d" y="%d" font-size="11">%s</text>`+"\n", lx+20, ly, esc(it.label))
		lx += 20 + 8*len(it.label) + 24
	}
	return s.close()
}

// Bar is one bar of a panel.
type Bar struct {
	Label string
	Value float64
	Text  string // the value as printed
	Main  bool   // highlighted (tokenkeeper)
}

// Panel is one small horizontal bar chart.
type Panel struct {
	Title string
	Bars  []Bar
}

// BarsSVG draws panels in a grid of cols columns under a title.
func BarsSVG(title string, panels []Panel, cols int) []byte {
	const (
		panelW = 620
		labelW = 250
		barH   = 16
		gap    = 4
		head   = 40
	)
	maxBars := 0
	for _, p := range panels {
		maxBars = max(maxBars, len(p.Bars))
	}
	panelH := 34 + maxBars*(barH+gap) + 16
	rows := (len(panels) + cols - 1) / cols
	width, height := cols*panelW+20, head+rows*panelH
	var s svg
	s.open(width, height)
	s.f(`<text x="12" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", esc(title))
	for i, p := range panels {
		px := 10 + (i%cols)*panelW
		py := head + (i/cols)*panelH
		s.f(`<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", px+labelW, py+16, esc(p.Title))
		maxV := 0.0
		for _, b := range p.Bars {
			maxV = math.Max(maxV, b.Value)
		}
		plotW := float64(panelW - labelW - 90)
		for j, b := range p.Bars {
			y := py + 28 + j*(barH+gap)
			weight, col := "normal", colOther
			if b.Main {
				weight, col = "bold", colMain
			}
			s.f(`<text x="%d" y="%d" text-anchor="end" font-size="11" font-weight="%s">%s</text>`+"\n", px+labelW-6, y+12, weight, esc(b.Label))
			w := 0.0
			if maxV > 0 {
				w = plotW * b.Value / maxV
			}
			if b.Value > 0 {
				w = math.Max(w, 1)
			}
			s.f(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", px+labelW, y, w, barH, col)
			s.f(`<text x="%.1f" y="%d" font-size="11">%s</text>`+"\n", float64(px+labelW)+w+4, y+12, esc(b.Text))
		}
	}
	return s.close()
}
