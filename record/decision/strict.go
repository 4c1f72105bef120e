package decision

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// checkExactJSON refuses JSON that encoding/json would accept only by
// changing it, so that what is signed is what was sent: invalid UTF-8 and
// unpaired surrogate escapes (decoded as U+FFFD), NUL characters, an object
// with a key twice (the last one would win), and integers beyond ±2^53
// (rounded to the nearest float64). Errors wrap ErrBadRequest and name the
// field. Malformed JSON is left to the decoder, which describes it.
func checkExactJSON(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: body is not valid UTF-8 (at byte %d)", ErrBadRequest, invalidUTF8At(data))
	}
	if err := checkEscapes(data); err != nil {
		return err
	}
	if err := checkValue(data); !errors.Is(err, errMalformed) {
		return err
	}
	return nil // malformed JSON: the decoder describes it
}

// errMalformed stops the walk at JSON the decoder will refuse anyway.
var errMalformed = errors.New("malformed JSON")

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// checkEscapes scans string literals for \u escapes that do not stand for
// a character as written: \u0000 and surrogates without their pair.
func checkEscapes(b []byte) error {
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case !inString:
			inString = c == '"'
		case c == '"':
			inString = false
		case c == 0:
			return fmt.Errorf("%w: a string holds a NUL character (at byte %d)", ErrBadRequest, i)
		case c == '\\' && i+1 < len(b):
			i++
			if b[i] != 'u' {
				continue
			}
			r, ok := hex4(b, i+1)
			if !ok {
				continue // malformed: the decoder says so
			}
			switch {
			case r == 0:
				return fmt.Errorf("%w: a string holds a NUL character (\\u0000 at byte %d)", ErrBadRequest, i-1)
			case r >= 0xdc00 && r <= 0xdfff:
				return fmt.Errorf("%w: a string holds an unpaired surrogate \\u%04x (at byte %d)", ErrBadRequest, r, i-1)
			case r >= 0xd800 && r <= 0xdbff:
				lo, ok := rune(0), i+6 < len(b) && b[i+5] == '\\' && b[i+6] == 'u'
				if ok {
					lo, ok = hex4(b, i+7)
				}
				if !ok || lo < 0xdc00 || lo > 0xdfff {
					return fmt.Errorf("%w: a string holds an unpaired surrogate \\u%04x (at byte %d)", ErrBadRequest, r, i-1)
				}
				i += 10
			default:
				i += 4
			}
		}
	}
	return nil
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[at:at+4]), 16, 16)
	return rune(v), err == nil
}

// maxDepth is encoding/json's limit on nesting; deeper documents are
// malformed to it.
const maxDepth = 10000

// exactScanner walks one JSON value over its bytes, in document order,
// checking its syntax as encoding/json's decoder does and refusing, as it
// goes, an object with a key twice and an integer beyond ±2^53. It
// allocates nothing for a document without such a fault, bar keys with
// escapes and large objects.
type exactScanner struct {
	b     []byte
	i     int
	depth int
	// path is where the scanner is, kept as segments and written out
	// only for an error.
	path []pathSegment
	// keys are the keys of the objects being scanned, innermost last.
	keys [][][]byte
}

type pathSegment struct {
	key   []byte // the object key, in the scanned bytes unless escaped
	index int
	isKey bool
}

// checkValue walks the document's first value. It returns an error that
// wraps ErrBadRequest and names the field, errMalformed for bad syntax,
// or nil.
func checkValue(data []byte) error {
	s := exactScanner{b: data}
	return s.value()
}

func (s *exactScanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *exactScanner) value() error {
	s.skipSpace()
	if s.i >= len(s.b) {
		return errMalformed
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return errMalformed
}

func (s *exactScanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return errMalformed
	}
	s.i += len(lit)
	return nil
}

// next is the next byte after white space, or 0 at the end.
func (s *exactScanner) next() byte {
	s.skipSpace()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *exactScanner) object() error {
	if s.depth++; s.depth > maxDepth {
		return errMalformed
	}
	s.i++ // '{'
	level := len(s.keys)
	// The key list of a sibling scanned before at this depth is reused:
	// a request's objects, nested a few deep, then share a handful.
	if level < cap(s.keys) {
		s.keys = s.keys[:level+1]
		s.keys[level] = s.keys[level][:0]
	} else {
		s.keys = append(s.keys, nil)
	}
	var seen map[string]bool // for objects too large to compare keys by scanning
	defer func() { s.keys = s.keys[:level] }()
	if s.next() == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if s.next() != '"' {
			return errMalformed
		}
		raw, escaped, err := s.str()
		if err != nil {
			return err
		}
		key := raw
		if escaped {
			var k string
			if json.Unmarshal(s.b[s.i-len(raw)-2:s.i], &k) != nil {
				return errMalformed
			}
			key = []byte(k)
		}
		dup := false
		if seen != nil {
			dup = seen[string(key)]
			seen[string(key)] = true
		} else {
			for _, k := range s.keys[level] {
				if bytes.Equal(k, key) {
					dup = true
					break
				}
			}
			s.keys[level] = append(s.keys[level], key)
			if len(s.keys[level]) > 32 {
				seen = make(map[string]bool, 64)
				for _, k := range s.keys[level] {
					seen[string(k)] = true
				}
			}
		}
		s.path = append(s.path, pathSegment{key: key, isKey: true})
		if dup {
			return fmt.Errorf("%w: field %q appears twice in one object", ErrBadRequest, s.pathString())
		}
		if s.next() != ':' {
			return errMalformed
		}
		s.i++
		if err := s.value(); err != nil {
			return err
		}
		s.path = s.path[:len(s.path)-1]
		switch s.next() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return errMalformed
		}
	}
}

func (s *exactScanner) array() error {
	if s.depth++; s.depth > maxDepth {
		return errMalformed
	}
	s.i++ // '['
	if s.next() == ']' {
		s.i++
		s.depth--
		return nil
	}
	for n := 0; ; n++ {
		s.path = append(s.path, pathSegment{index: n})
		if err := s.value(); err != nil {
			return err
		}
		s.path = s.path[:len(s.path)-1]
		switch s.next() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return errMalformed
		}
	}
}

// str scans a string literal and returns its raw content (between the
// quotes) and whether it holds escapes.
func (s *exactScanner) str() (raw []byte, escaped bool, err error) {
	s.i++ // '"'
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, escaped, nil
		case c < 0x20:
			return nil, false, errMalformed
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return nil, false, errMalformed
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if _, ok := hex4(s.b, s.i+2); !ok {
					return nil, false, errMalformed
				}
				s.i += 6
			default:
				return nil, false, errMalformed
			}
		default:
			s.i++
		}
	}
	return nil, false, errMalformed
}

// number scans a number and refuses an integer beyond ±2^53.
func (s *exactScanner) number() error {
	start := s.i
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
	default:
		return errMalformed
	}
	integer := true
	if s.i < len(s.b) && s.b[s.i] == '.' {
		integer = false
		s.i++
		if !s.digits() {
			return errMalformed
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		integer = false
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if !s.digits() {
			return errMalformed
		}
	}
	if d := s.b[digits:s.i]; integer && (len(d) > len(maxExactInt) || len(d) == len(maxExactInt) && string(d) > maxExactInt) {
		return fmt.Errorf("%w: field %q: integer %s is beyond ±2^53 and cannot be kept exactly; send it as a string", ErrBadRequest, s.pathString(), s.b[start:s.i])
	}
	return nil
}

// maxExactInt is 2^53: every integer up to it is exact in a float64.
const maxExactInt = "9007199254740992"

func (s *exactScanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// pathString names the field being scanned: keys joined with dots,
// array positions in brackets.
func (s *exactScanner) pathString() string {
	path := ""
	for _, seg := range s.path {
		if seg.isKey {
			path = joinPath(path, string(seg.key))
		} else {
			path = fmt.Sprintf("%s[%d]", path, seg.index)
		}
	}
	return path
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
