package decision

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
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
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := checkValue(dec, ""); !errors.Is(err, errMalformed) {
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

// maxExactInt is the largest integer every float64 between 0 and it holds
// exactly.
var maxExactInt = new(big.Int).Lsh(big.NewInt(1), 53)

// checkValue walks one JSON value from dec; path names it in errors.
func checkValue(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return errMalformed
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return errMalformed
				}
				key, _ := kt.(string)
				field := joinPath(path, key)
				if seen[key] {
					return fmt.Errorf("%w: field %q appears twice in one object", ErrBadRequest, field)
				}
				seen[key] = true
				if err := checkValue(dec, field); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // '}'
				return errMalformed
			}
		case '[':
			for i := 0; dec.More(); i++ {
				if err := checkValue(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return errMalformed
			}
		}
	case json.Number:
		s := string(t)
		if !strings.ContainsAny(s, ".eE") {
			n, ok := new(big.Int).SetString(s, 10)
			if ok && n.CmpAbs(maxExactInt) > 0 {
				return fmt.Errorf("%w: field %q: integer %s is beyond ±2^53 and cannot be kept exactly; send it as a string", ErrBadRequest, path, s)
			}
		}
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
