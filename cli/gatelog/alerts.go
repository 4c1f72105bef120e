package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/engine/alert"
)

func alertsCommand() *cli.Command {
	return &cli.Command{
		Name:  "alerts",
		Usage: "follow the daemon's alerts",
		Subcommands: []*cli.Command{{
			Name:        "tail",
			Usage:       "print alerts as the daemon queues them (Ctrl-C to stop)",
			Description: "The stream lasts until --count alerts or ^C: --timeout does not end it.\n\n" + connectionHelp,
			Flags: append([]cli.Flag{
				&cli.IntFlag{Name: "recent", Value: 10, Usage: "first show up to this many recent alerts (0 to 100)"},
				&cli.IntFlag{Name: "count", Usage: "exit after this many alerts (0: never)"},
				&cli.BoolFlag{Name: "json", Usage: "print each alert as a JSON line"},
			}, clientFlags("API key with the read permission")...),
			Action: alertsTail,
		}},
	}
}

func alertsTail(c *cli.Context) error {
	cl, err := newClient(c, true)
	if err != nil {
		return err
	}
	resp, err := cl.request(c.Context, cl.stream, http.MethodGet, fmt.Sprintf("/v1/alerts/stream?recent=%d", c.Int("recent")), nil, http.Header{"Accept": {"text/event-stream"}})
	if err != nil {
		return fmt.Errorf("alerts tail: %w", err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var a alert.Alert
		if err := json.Unmarshal([]byte(data), &a); err != nil {
			return fmt.Errorf("alerts tail: bad event: %w", err)
		}
		if c.Bool("json") {
			fmt.Fprintln(c.App.Writer, data)
		} else {
			printAlert(c.App.Writer, a)
		}
		n++
		if c.Int("count") > 0 && n >= c.Int("count") {
			return nil
		}
	}
	if c.Context.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("alerts tail: %w", err)
	}
	return fmt.Errorf("alerts tail: the daemon closed the stream")
}

func printAlert(w io.Writer, a alert.Alert) {
	fmt.Fprintf(w, "%s  %-8s %s  %s\n", printable(a.Time), printable(strings.ToUpper(a.Severity)), printable(a.Code), printable(a.Message))
	var where []string
	if a.Subject != "" || a.Action != "" {
		where = append(where, strings.TrimSpace(a.Subject+" "+a.Action))
	}
	if a.Environment != "" {
		where = append(where, a.Environment)
	}
	if a.LogIndex != nil {
		where = append(where, fmt.Sprintf("decision %s, log index %d", a.DecisionID, *a.LogIndex))
	}
	if len(where) > 0 {
		fmt.Fprintf(w, "    %s\n", printable(strings.Join(where, "; ")))
	}
}
