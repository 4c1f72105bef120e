package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// allDayEveryDay is the working_hours block PinPolicies writes.
const allDayEveryDay = `  working_hours:
    time_zone: UTC
    days: [Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday]
    start: "00:00"
    end: "24:00"
`

// PinPolicies copies the policy files of src (.rego and data.yaml, as the
// daemon bundles them) into dst with working_hours set to all day, every
// day, and returns dst.
//
// The daemon stamps context.time with its own clock, while OPA is given the
// request files' fixed time; with the bundled working hours a privileged
// request at night or on a weekend raises an off_hours alert on gatelog's
// side only, and each alert costs a durable outbox write. Pinning the
// hours makes both servers do the same work whatever day the bench runs.
func PinPolicies(src, dst string) (string, error) {
	ents, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	pinned := false
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || (!strings.HasSuffix(name, ".rego") && name != "data.yaml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return "", err
		}
		if name == "data.yaml" {
			if b, err = pinWorkingHours(b); err != nil {
				return "", fmt.Errorf("%s: %w", filepath.Join(src, name), err)
			}
			pinned = true
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			return "", err
		}
	}
	if !pinned {
		return "", fmt.Errorf("%s has no data.yaml whose working_hours could be pinned", src)
	}
	return dst, nil
}

// pinWorkingHours replaces the gatelog_config.working_hours block of a
// data.yaml (two-space indented, as the bundled file is written).
func pinWorkingHours(yaml []byte) ([]byte, error) {
	lines := strings.SplitAfter(string(yaml), "\n")
	var out strings.Builder
	found := false
	for i := 0; i < len(lines); i++ {
		if strings.TrimRight(lines[i], "\r\n") != "  working_hours:" {
			out.WriteString(lines[i])
			continue
		}
		found = true
		out.WriteString(allDayEveryDay)
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "    ") {
			i++
		}
	}
	if !found {
		return nil, errors.New(`no "  working_hours:" block to pin`)
	}
	return []byte(out.String()), nil
}
