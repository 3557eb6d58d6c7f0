package agent

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// statusPage is the whole status page: markup, style and script in one file,
// with nothing loaded from elsewhere.
//
//go:embed page/index.html
var statusPage []byte

// pageCSP allows exactly the page's own inline style and script (by hash)
// and requests to the agent itself.
var pageCSP = func() string {
	hashes := func(tag string) string {
		re := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`)
		out := ""
		for _, m := range re.FindAllSubmatch(statusPage, -1) {
			sum := sha256.Sum256(m[1])
			out += " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		}
		return out
	}
	return "default-src 'none'; script-src" + hashes("script") + "; style-src" + hashes("style") +
		"; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

// PageLink returns the status page's address with the secret in the URL
// fragment, for the command to print: the browser never sends the fragment
// to the server (so no log sees it); the page trades it once for a session
// cookie and removes it from the address bar. base is the agent's URL, such
// as "http://127.0.0.1:8377". With an empty secret it returns the page's
// plain address.
func PageLink(base, secret string) string {
	base = strings.TrimRight(base, "/")
	if secret == "" {
		return base + "/"
	}
	return base + "/#secret=" + url.QueryEscape(secret)
}

// servePage answers GET /: the status page. The page itself holds no data
// and needs no credentials; it fetches everything from the API.
func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", pageCSP)
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr["X-Content-Type-Options"] = hdrNoSniff
	hdr["Cache-Control"] = hdrNoStore
	w.Write(statusPage)
}

// overview is what the status page draws.
type overview struct {
	Version        string        `json:"version"`
	Now            time.Time     `json:"now"`
	Started        time.Time     `json:"started"`
	HistorySeconds float64       `json:"history_seconds"`
	Ready          bool          `json:"ready"`
	Auth           bool          `json:"auth"`
	Tokens         []TokenStatus `json:"tokens"`
	Queue          queueJSON     `json:"queue"`
	EventsDropped  uint64        `json:"events_dropped"`
	Activity       activityJSON  `json:"activity"`
	Windows        []window      `json:"windows"`
	Attempts       []attemptMark `json:"attempts"`
}

type queueJSON struct {
	Queued  int    `json:"queued"`
	Running int    `json:"running"`
	Panics  uint64 `json:"worker_panics"`
}

type activityJSON struct {
	Start         time.Time `json:"start"`
	StepSeconds   int       `json:"step_seconds"`
	ActiveSeconds []int     `json:"active_seconds"`
	// Recent is the activity of each second of the recent period, for the
	// page's short zoom levels (minutes are too coarse for short-lived
	// tokens).
	Recent recentJSON `json:"recent"`
}

// recentJSON is per-second activity, compressed to the runs of active
// seconds: each run is [first, end) in seconds from Start (end exclusive),
// in order. Start is a whole second; the period covers Seconds seconds, the
// last one being the current second.
type recentJSON struct {
	Start   time.Time `json:"start"`
	Seconds int       `json:"seconds"`
	Runs    [][2]int  `json:"active_runs"`
}

// maxRecentMinutes bounds the per-second activity in the overview: the
// page draws it for zoom levels up to 15 minutes.
const maxRecentMinutes = 15

// activeRuns compresses per-second activity (oldest first) to the runs of
// active seconds, [first, end) by index. Never nil.
func activeRuns(secs []bool) [][2]int {
	runs := [][2]int{}
	for i := 0; i < len(secs); i++ {
		if !secs[i] {
			continue
		}
		j := i + 1
		for j < len(secs) && secs[j] {
			j++
		}
		runs = append(runs, [2]int{i, j})
		i = j
	}
	return runs
}

// recentActivity returns the per-second activity of the last n seconds
// (the current one included).
func (s *Server) recentActivity(n int) recentJSON {
	// The keeper reads the clock itself: read it before and after, so that
	// Start names the same second as the keeper's last one (a second that
	// ends in between is read again).
	var secs []bool
	var end time.Time
	for range 3 {
		end = time.Now().Truncate(time.Second)
		secs = s.k.ActiveSeconds(n)
		if time.Now().Truncate(time.Second).Equal(end) {
			break
		}
	}
	return recentJSON{Start: end.Add(-time.Duration(len(secs)-1) * time.Second),
		Seconds: len(secs), Runs: activeRuns(secs)}
}

// serveOverview answers GET /v1/overview[?minutes=N]: statuses, queue,
// activity per minute, refresh windows and attempts of the last N minutes
// (History by default), and the activity of each second of the last N
// minutes, at most the last 15.
func (s *Server) serveOverview(w http.ResponseWriter, r *http.Request) {
	minutes := int(s.history / time.Minute)
	for k, vs := range r.URL.Query() {
		n, err := strconv.Atoi(vs[0])
		if k != "minutes" || len(vs) != 1 || err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "the only query parameter is minutes, a positive integer")
			return
		}
		minutes = min(n, int(s.history/time.Minute))
	}
	minutes = max(minutes, 1)
	now := time.Now()
	sts := s.k.Status()
	s.hist.windows(sts, now)
	from := now.Truncate(time.Minute).Add(-time.Duration(minutes-1) * time.Minute)
	attempts, wins := s.hist.since(from)
	q, running, panics := s.k.QueueStats()
	ov := overview{
		Version: s.version, Now: now, Started: s.started, HistorySeconds: s.history.Seconds(),
		Ready: true, Auth: s.secret != "",
		Tokens:        make([]TokenStatus, len(sts)),
		Queue:         queueJSON{Queued: q, Running: running, Panics: panics},
		EventsDropped: s.k.DroppedEvents(),
		Activity: activityJSON{Start: from, StepSeconds: 60,
			ActiveSeconds: s.k.Timeline(minutes),
			Recent:        s.recentActivity(min(minutes, maxRecentMinutes) * 60)},
		Windows:  wins,
		Attempts: attempts,
	}
	for i, st := range sts {
		ov.Tokens[i] = toStatusJSON(st, now)
		ov.Ready = ov.Ready && ov.Tokens[i].Ready
	}
	if ov.Windows == nil {
		ov.Windows = []window{}
	}
	if ov.Attempts == nil {
		ov.Attempts = []attemptMark{}
	}
	writeJSON(w, http.StatusOK, ov)
}
