package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a config file, with its position.
type Error struct {
	File   string // the file's name as given to Parse
	Line   int    // 1-based; 0 when the problem has no single position
	Column int    // 1-based; 0 when unknown
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
		if e.Column > 0 {
			b.WriteString(strconv.Itoa(e.Column))
			b.WriteByte(':')
		}
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a config file, in file order. Parse
// reports all of them at once, so that one run of check-config shows them
// all.
type ErrorList []*Error

func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems in config:", len(l))
	for _, e := range l {
		b.WriteString("\n\t")
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap gives errors.As access to each *Error.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// errs collects errors while a file is validated.
type errs struct {
	file string
	list ErrorList
}

func (c *errs) at(line, col int, format string, args ...any) {
	c.list = append(c.list, &Error{File: c.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

func (c *errs) err() error {
	if len(c.list) == 0 {
		return nil
	}
	slices.SortStableFunc(c.list, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	// The same problem reported by both passes (the key checker's message
	// extends yaml.v3's) is shown once, with the longer message.
	var out ErrorList
	for i, e := range c.list {
		dup := false
		for j, f := range c.list {
			if i != j && e.Line == f.Line && strings.HasPrefix(f.Msg, e.Msg) && (len(f.Msg) > len(e.Msg) || j < i) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, e)
		}
	}
	return out
}

var (
	yamlLineRe    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlNotFound  = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	yamlUnmarshal = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
)

// yamlMessage turns one of yaml.v3's messages ("line 4: cannot unmarshal
// !!map into string") into a position and a message for people.
func yamlMessage(s string) (line int, msg string) {
	m := yamlLineRe.FindStringSubmatch(s)
	if m == nil {
		return 0, strings.TrimPrefix(s, "yaml: ")
	}
	line, _ = strconv.Atoi(m[1])
	msg = m[2]
	if n := yamlNotFound.FindStringSubmatch(msg); n != nil {
		msg = fmt.Sprintf("unknown key %q", n[1])
	} else if u := yamlUnmarshal.FindStringSubmatch(msg); u != nil {
		msg = fmt.Sprintf("expected %s, found %s", goTypeWord(u[3]), yamlKindWord(u[1], u[2]))
	}
	return line, msg
}

func goTypeWord(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	}
	return "a mapping" // our own struct types
}

func yamlKindWord(tag, val string) string {
	switch tag {
	case "map":
		return "a mapping"
	case "seq":
		return "a list"
	case "str":
		return fmt.Sprintf("the string %q", val)
	case "bool":
		return "a boolean"
	case "int", "float":
		return "the number " + val
	case "null":
		return "null"
	}
	return "a " + tag + " value"
}
