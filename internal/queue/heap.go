package queue

// jobHeap is a binary heap of one group's queued jobs, best (see job.before)
// first. Each job records its position so that it can be moved or removed in
// O(log n).
type jobHeap[K comparable] []*job[K]

func (h jobHeap[K]) swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].index = i
	h[k].index = k
}

func (h jobHeap[K]) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h[i].before(h[parent]) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h jobHeap[K]) down(i int) bool {
	start := i
	for {
		best := i
		if l := 2*i + 1; l < len(h) && h[l].before(h[best]) {
			best = l
		}
		if r := 2*i + 2; r < len(h) && h[r].before(h[best]) {
			best = r
		}
		if best == i {
			return i != start
		}
		h.swap(i, best)
		i = best
	}
}

func (h *jobHeap[K]) push(j *job[K]) {
	j.index = len(*h)
	*h = append(*h, j)
	h.up(j.index)
}

func (h *jobHeap[K]) pop() *job[K] {
	return h.remove(0)
}

func (h *jobHeap[K]) remove(i int) *job[K] {
	old := *h
	n := len(old) - 1
	j := old[i]
	if i != n {
		old.swap(i, n)
	}
	old[n] = nil
	*h = old[:n]
	if i != n && !h.down(i) {
		h.up(i)
	}
	j.index = -1
	return j
}

// groupHeap is a binary heap of the ready groups, ordered by their best job.
// Every group in it has at least one queued job.
type groupHeap[K comparable] []*group[K]

func (h groupHeap[K]) less(i, k int) bool {
	return h[i].jobs[0].before(h[k].jobs[0])
}

func (h groupHeap[K]) swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].index = i
	h[k].index = k
}

func (h groupHeap[K]) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h groupHeap[K]) down(i int) bool {
	start := i
	for {
		best := i
		if l := 2*i + 1; l < len(h) && h.less(l, best) {
			best = l
		}
		if r := 2*i + 2; r < len(h) && h.less(r, best) {
			best = r
		}
		if best == i {
			return i != start
		}
		h.swap(i, best)
		i = best
	}
}

func (h groupHeap[K]) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *groupHeap[K]) push(g *group[K]) {
	g.index = len(*h)
	*h = append(*h, g)
	h.up(g.index)
}

func (h *groupHeap[K]) remove(i int) {
	old := *h
	n := len(old) - 1
	g := old[i]
	if i != n {
		old.swap(i, n)
	}
	old[n] = nil
	*h = old[:n]
	if i != n {
		h.fix(i)
	}
	g.index = -1
}
