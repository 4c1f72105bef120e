package main

// The docs cannot drift from the CLI: every fenced block of README.md,
// docs/ and examples/*/README.md says what it is in its info string, every
// `gatelog …` command line in them parses against the real command tree,
// and the `sh` blocks run, page by page, against a fresh daemon.
// docs/development.md ("The docs are tested") states these rules for
// writers.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/internal/e2e"
)

// readmeLimit is the front door's budget: what gatelog is, the two
// commands, the walk-through and a map; everything else lives in docs/.
const readmeLimit = 15 * 1024

// docBlock is one fenced code block of a Markdown page.
type docBlock struct {
	page string // relative to the repository root
	line int    // of the opening fence, 1-based
	info string // the info string, trimmed
	body []string
}

// shell reports whether the block holds shell commands, and the reason it
// is not run ("" for a block the walk-through test runs).
func (b docBlock) shell() (isShell bool, noRun string) {
	lang, rest, _ := strings.Cut(b.info, " ")
	if lang != "sh" {
		return false, ""
	}
	rest = strings.TrimSpace(rest)
	if r, ok := strings.CutPrefix(rest, "no-run:"); ok {
		return true, strings.TrimSpace(r)
	}
	return true, ""
}

// docSpan is an inline code span outside the fenced blocks.
type docSpan struct {
	page string
	line int
	text string
}

// docPages lists every page whose commands are checked.
func docPages(t *testing.T) []string {
	t.Helper()
	root := e2e.RepoRoot(t)
	pages := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, _ := filepath.Rel(root, p)
			pages = append(pages, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	examples, _ := filepath.Glob(filepath.Join(root, "examples", "*", "README.md"))
	for _, p := range examples {
		rel, _ := filepath.Rel(root, p)
		pages = append(pages, filepath.ToSlash(rel))
	}
	if len(pages) < 15 {
		t.Fatalf("found only %d doc pages: %v", len(pages), pages)
	}
	return pages
}

var fenceRe = regexp.MustCompile("^( *)(`{3,}|~{3,})(.*)$")

// parseMarkdown splits a page into its fenced blocks and the inline code
// spans of the text around them (CommonMark's rules, as far as these docs
// need them: a fence may be indented, a span is delimited by backtick runs
// of equal length and may cross a line break).
func parseMarkdown(page string, src []byte) ([]docBlock, []docSpan, error) {
	var blocks []docBlock
	var spans []docSpan
	lines := strings.Split(string(src), "\n")
	var text []string // the page with fenced blocks blanked out
	var open *docBlock
	var fence, indent string
	for i, l := range lines {
		if open != nil {
			if t := strings.TrimSpace(l); strings.HasPrefix(t, fence) && strings.Trim(t, fence[:1]) == "" {
				blocks = append(blocks, *open)
				open = nil
			} else {
				open.body = append(open.body, strings.TrimPrefix(l, indent))
			}
			text = append(text, "")
			continue
		}
		if m := fenceRe.FindStringSubmatch(l); m != nil && !(m[2][0] == '`' && strings.Contains(m[3], "`")) {
			open = &docBlock{page: page, line: i + 1, info: strings.TrimSpace(m[3])}
			fence, indent = m[2], m[1]
			text = append(text, "")
			continue
		}
		text = append(text, l)
	}
	if open != nil {
		return nil, nil, fmt.Errorf("%s:%d: fence never closed", page, open.line)
	}
	all := strings.Join(text, "\n")
	for i := 0; i < len(all); {
		if all[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < len(all) && all[i+n] == '`' {
			n++
		}
		start := i + n
		end := -1
		for j := start; j < len(all); {
			if all[j] != '`' {
				j++
				continue
			}
			k := 0
			for j+k < len(all) && all[j+k] == '`' {
				k++
			}
			if k == n {
				end = j
				break
			}
			j += k
		}
		if end < 0 {
			i = start
			continue
		}
		spans = append(spans, docSpan{page: page, line: strings.Count(all[:i], "\n") + 1,
			text: strings.TrimSpace(strings.ReplaceAll(all[start:end], "\n", " "))})
		i = end + n
	}
	return blocks, spans, nil
}

func readDocs(t *testing.T) (blocks []docBlock, spans []docSpan) {
	t.Helper()
	root := e2e.RepoRoot(t)
	for _, page := range docPages(t) {
		src, err := os.ReadFile(filepath.Join(root, page))
		if err != nil {
			t.Fatal(err)
		}
		b, s, err := parseMarkdown(page, src)
		if err != nil {
			t.Fatal(err)
		}
		blocks, spans = append(blocks, b...), append(spans, s...)
	}
	return blocks, spans
}

// logicalLines joins backslash-continued lines; each result keeps the line
// number it starts on.
func logicalLines(body []string) (lines []string, at []int) {
	var cur strings.Builder
	start := -1
	for i, l := range body {
		if start < 0 {
			start = i
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(l)
		lines, at = append(lines, cur.String()), append(at, start)
		cur.Reset()
		start = -1
	}
	if start >= 0 {
		lines, at = append(lines, cur.String()), append(at, start)
	}
	return lines, at
}

// shellWords splits a command line into simple commands (at unquoted ;, &,
// |, && and ||) of words, with quotes removed, as far as the docs need: a
// comment or a redirection ends the command's words; $(…) stays one word.
func shellWords(line string) [][]string {
	var cmds [][]string
	var words []string
	var w strings.Builder
	inWord, ended := false, false
	flushWord := func() {
		if inWord && !ended {
			words = append(words, w.String())
		}
		w.Reset()
		inWord = false
	}
	flushCmd := func() {
		flushWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
		words, ended = nil, false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				j = len(line) - i - 1
			}
			w.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			for i++; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				w.WriteByte(line[i])
			}
			inWord = true
		case c == '\\' && i+1 < len(line):
			w.WriteByte(line[i+1])
			inWord = true
			i++
		case c == '$' && i+1 < len(line) && line[i+1] == '(':
			depth := 0
			for ; i < len(line); i++ {
				w.WriteByte(line[i])
				if line[i] == '(' {
					depth++
				} else if line[i] == ')' {
					if depth--; depth == 0 {
						break
					}
				}
			}
			inWord = true
		case c == ' ' || c == '\t':
			flushWord()
		case c == '#' && !inWord:
			flushCmd()
			return cmds
		case c == ';' || c == '|' || c == '&':
			flushCmd()
			if i+1 < len(line) && (line[i+1] == '|' || line[i+1] == '&') {
				i++
			}
		case (c == '>' || c == '<') && !inWord, (c == '>' || c == '<') && isDigits(w.String()):
			// A redirection: the command's words are over.
			w.Reset()
			inWord = false
			ended = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	flushCmd()
	return cmds
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// gatelogArgs returns the arguments after the program name when words run
// gatelog (after any VAR=value assignments), else nil.
func gatelogArgs(words []string) ([]string, bool) {
	for len(words) > 0 && assignment.MatchString(words[0]) {
		words = words[1:]
	}
	if len(words) == 0 {
		return nil, false
	}
	switch words[0] {
	case "gatelog", "bin/gatelog", "./bin/gatelog":
		return words[1:], true
	}
	return nil, false
}

// parseDocumented parses args as the gatelog binary would: each subcommand must
// exist, and the flags must parse with the command's own flag set; a flag
// after a positional argument is an error too, since the CLI would take it
// for an argument.
//
// Prose is looser than a block: with inline set, a command group alone
// (`gatelog log`) and a trailing flag without its value (`--out`) name
// things rather than run them, and pass.
func parseDocumented(app *cli.App, args []string, inline bool) error {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-v" || args[0] == "--help" || args[0] == "-h") {
		return nil
	}
	cmds := app.Commands
	var cur *cli.Command
	path := "gatelog"
	for len(args) > 0 {
		if args[0] == "help" || args[0] == "h" {
			// gatelog [COMMAND…] help [SUBCOMMAND]: the names must exist.
			for _, name := range args[1:] {
				sub := findCommand(cmds, name)
				if sub == nil {
					return fmt.Errorf("%s help: no command %q", path, name)
				}
				cmds = sub.Subcommands
			}
			return nil
		}
		sub := findCommand(cmds, args[0])
		if sub == nil {
			break
		}
		cur, cmds, args = sub, sub.Subcommands, args[1:]
		path += " " + sub.Name
	}
	if cur == nil {
		if len(args) == 0 {
			return fmt.Errorf("gatelog: no command")
		}
		return fmt.Errorf("gatelog has no command %q", args[0])
	}
	if len(cur.Subcommands) > 0 && cur.Action == nil {
		if inline && len(args) == 0 {
			return nil
		}
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			return fmt.Errorf("%s has no subcommand %q", path, args[0])
		}
		if len(args) == 0 || (args[0] != "--help" && args[0] != "-h") {
			return fmt.Errorf("%s needs a subcommand", path)
		}
	}
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range cur.Flags {
		if err := f.Apply(fs); err != nil {
			return fmt.Errorf("%s: flag %v: %w", path, f.Names(), err)
		}
	}
	if fs.Lookup("help") == nil {
		fs.Bool("help", false, "")
		fs.Bool("h", false, "")
	}
	if n := len(args); inline && n > 0 && strings.HasPrefix(args[n-1], "-") {
		if f := fs.Lookup(strings.TrimLeft(args[n-1], "-")); f != nil {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				args = args[:n-1]
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, a := range fs.Args() {
		if strings.HasPrefix(a, "-") && a != "-" {
			return fmt.Errorf("%s: %s comes after a positional argument, so it would be taken as one", path, a)
		}
	}
	return nil
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// documentedCommand is one `gatelog …` command line found in the docs.
type documentedCommand struct {
	where  string // page:line
	text   string
	args   []string
	inline bool // from a code span in the text, not a block
}

func documentedCommands(t *testing.T) []documentedCommand {
	t.Helper()
	blocks, spans := readDocs(t)
	var out []documentedCommand
	for _, b := range blocks {
		if ok, _ := b.shell(); !ok {
			continue
		}
		lines, at := logicalLines(b.body)
		for i, l := range lines {
			for _, words := range shellWords(l) {
				if args, ok := gatelogArgs(words); ok {
					out = append(out, documentedCommand{fmt.Sprintf("%s:%d", b.page, b.line+1+at[i]), strings.TrimSpace(l), args, false})
				}
			}
		}
	}
	app := newApp()
	for _, s := range spans {
		if !strings.HasPrefix(s.text, "gatelog ") {
			continue
		}
		for _, words := range shellWords(s.text) {
			// A span whose next word is no command is prose that
			// starts with the name ("gatelog denied: …"), not a command.
			if args, ok := gatelogArgs(words); ok && len(args) > 0 &&
				(findCommand(app.Commands, args[0]) != nil || args[0] == "help" || strings.HasPrefix(args[0], "-")) {
				out = append(out, documentedCommand{fmt.Sprintf("%s:%d", s.page, s.line), s.text, args, true})
			}
		}
	}
	return out
}

// TestReadmeSize keeps the README a front door.
func TestReadmeSize(t *testing.T) {
	fi, err := os.Stat(filepath.Join(e2e.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > readmeLimit {
		t.Errorf("README.md is %d bytes, over %d: move the detail into a docs/ page and link it", fi.Size(), readmeLimit)
	}
	src, _ := os.ReadFile(filepath.Join(e2e.RepoRoot(t), "README.md"))
	for _, must := range []string{"make run", "make test"} {
		if !bytes.Contains(src, []byte(must)) {
			t.Errorf("README.md no longer names %q", must)
		}
	}
}

// TestDocsBlocksSayWhatTheyAre: a block without an info string could be a
// command nobody checks; a shell block is `sh`, run unless it says why not.
func TestDocsBlocksSayWhatTheyAre(t *testing.T) {
	blocks, _ := readDocs(t)
	runnable := 0
	for _, b := range blocks {
		lang, _, _ := strings.Cut(b.info, " ")
		switch lang {
		case "":
			t.Errorf("%s:%d: fenced block without an info string (sh, sh no-run: why, text, json, …)", b.page, b.line)
		case "bash", "shell", "console", "shell-session", "zsh":
			t.Errorf("%s:%d: shell block marked %q: use sh (run by the docs test) or sh no-run: why", b.page, b.line, lang)
		case "sh":
			_, noRun := b.shell()
			rest := strings.TrimSpace(strings.TrimPrefix(b.info, "sh"))
			if rest != "" && noRun == "" {
				t.Errorf("%s:%d: info string %q: after sh comes nothing, or no-run: and the reason", b.page, b.line, b.info)
			}
			if noRun == "" && rest == "" {
				runnable++
			}
		}
	}
	if runnable < 10 {
		t.Errorf("only %d runnable sh blocks in the docs", runnable)
	}
}

// TestDocsCommandsParse: every documented `gatelog …` command names real
// commands and flags, and its flag values parse (durations, numbers).
func TestDocsCommandsParse(t *testing.T) {
	app := newApp()
	cmds := documentedCommands(t)
	for _, c := range cmds {
		if err := parseDocumented(app, c.args, c.inline); err != nil {
			t.Errorf("%s: %s\n\t%v", c.where, c.text, err)
		}
	}
	seen := map[string]bool{}
	for _, c := range cmds {
		if len(c.args) > 0 {
			seen[c.args[0]] = true
		}
	}
	for _, c := range app.Commands {
		if !seen[c.Name] {
			t.Errorf("no page shows a `gatelog %s` command line", c.Name)
		}
	}
	if len(cmds) < 100 {
		t.Errorf("found only %d gatelog command lines in the docs", len(cmds))
	}
}

// TestDocsCommandCheckerCatchesDrift: the checker itself refuses what a
// stale page would say.
func TestDocsCommandCheckerCatchesDrift(t *testing.T) {
	app := newApp()
	for _, bad := range []string{
		"gatelog decide --no-such-flag x",
		"gatelog nosuchcommand",
		"gatelog log nosuchsub --server x",
		"gatelog log",
		"gatelog monitor --interval soon",
		"gatelog log get --index first",
		"gatelog keys revoke ci-jenkins --json",
		"gatelog help nosuchcommand",
	} {
		words := shellWords(bad)
		args, _ := gatelogArgs(words[0])
		if err := parseDocumented(app, args, false); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	for _, good := range []string{
		`gatelog decide --server http://127.0.0.1:8080 --input "a b.json" --out r.json   # exit 0`,
		`GATELOG_API_KEY=x gatelog keys create --name auditor --perm read > read.key`,
		`gatelog log get --uuid "$(jq -r .uuid receipt.json)" --json`,
		`gatelog keys revoke --json ci-jenkins`,
		`gatelog help decide`,
		`gatelog --version`,
		`gatelog adapter translate -i - tekton < payload.json`,
	} {
		words := shellWords(good)
		args, ok := gatelogArgs(words[0])
		if !ok {
			t.Errorf("%q: not seen as a gatelog command: %q", good, words)
			continue
		}
		if err := parseDocumented(app, args, false); err != nil {
			t.Errorf("refused %q: %v", good, err)
		}
	}
}

// exitComment is a runnable command's expected exit status, from its
// trailing comment.
var exitComment = regexp.MustCompile(`#\s*exit (\d+)\b`)

// docsScript turns a page's runnable blocks into one bash script that runs
// every command in order and stops at the first one whose exit status is
// not the documented one (0 unless its comment says `# exit N`).
func docsScript(blocks []docBlock, addr string) string {
	var s strings.Builder
	for _, b := range blocks {
		lines, at := logicalLines(b.body)
		for i, l := range lines {
			if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			want := "0"
			if m := exitComment.FindStringSubmatch(l); m != nil {
				want = m[1]
			}
			// The physical lines, continuations and all, as the reader sees them.
			cmd := strings.Join(b.body[at[i]:at[i]+1+continuationCount(b.body[at[i]:])], "\n")
			cmd = strings.ReplaceAll(cmd, "127.0.0.1:8080", addr)
			where := fmt.Sprintf("%s:%d", b.page, b.line+1+at[i])
			fmt.Fprintf(&s, "%s\n__rc=$?\nif [ \"$__rc\" != %s ]; then echo %s >&2; exit 97; fi\n",
				cmd, want, shellQuote(fmt.Sprintf("docs: %s: exit $__rc, want %s: %s", where, want, strings.TrimSpace(l))))
		}
	}
	return s.String()
}

// continuationCount is how many lines after the first belong to the same
// logical line.
func continuationCount(lines []string) int {
	n := 0
	for n < len(lines)-1 && strings.HasSuffix(lines[n], "\\") {
		n++
	}
	return n
}

// shellQuote quotes s for bash so that only $__rc is expanded.
func shellQuote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	s = strings.ReplaceAll(s, "`", "\\`")
	s = strings.ReplaceAll(s, "$", `\$`)
	s = strings.ReplaceAll(s, `\$__rc`, `$__rc`)
	return `"` + s + `"`
}

// TestDocsWalkthroughs runs every page's `sh` blocks, in order, as one bash
// script in a scratch directory laid out like the repository (examples/,
// policies/, plugins/, scripts/, bin/gatelog, gatelog-data/ of a fresh
// daemon), with the daemon's address in place of 127.0.0.1:8080.
func TestDocsWalkthroughs(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is needed to run the docs' commands")
	}
	blocks, _ := readDocs(t)
	byPage := map[string][]docBlock{}
	var pages []string
	for _, b := range blocks {
		if ok, noRun := b.shell(); ok && noRun == "" {
			if byPage[b.page] == nil {
				pages = append(pages, b.page)
			}
			byPage[b.page] = append(byPage[b.page], b)
		}
	}
	if len(pages) < 6 {
		t.Fatalf("only %d pages have runnable blocks: %v", len(pages), pages)
	}
	bin := e2e.Build(t)
	root := e2e.RepoRoot(t)
	for _, page := range pages {
		t.Run(strings.TrimSuffix(page, ".md"), func(t *testing.T) {
			d := e2e.Start(t, bin, nil)
			dir := t.TempDir()
			for _, link := range []string{"examples", "plugins", "scripts"} {
				if err := os.Symlink(filepath.Join(root, link), filepath.Join(dir, link)); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.CopyFS(filepath.Join(dir, "policies"), os.DirFS(filepath.Join(root, "policies"))); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(bin, filepath.Join(dir, "bin", "gatelog")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(d.Data, filepath.Join(dir, "gatelog-data")); err != nil {
				t.Fatal(err)
			}
			script := docsScript(byPage[page], d.Addr)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-c", script)
			cmd.Dir = dir
			var env []string
			for _, e := range os.Environ() {
				if !strings.HasPrefix(e, "GATELOG_") && !strings.HasPrefix(e, "HOME=") && !strings.HasPrefix(e, "XDG_") && !strings.HasPrefix(e, "PATH=") {
					env = append(env, e)
				}
			}
			cmd.Env = append(env, "PATH="+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"), "HOME="+dir,
				"XDG_CONFIG_HOME="+filepath.Join(dir, ".config"), "GATELOG_SERVER="+d.URL)
			// A fresh HOME, but the machine's Go caches, as a user's own
			// shell has them: `go install` in a page (cosign) then builds
			// once per machine instead of once per run.
			cmd.Env = append(cmd.Env, goCaches(t)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s: %v\n%s\n--- daemon log ---\n%s", page, err, out, tail(d.Log(), 40))
			}
		})
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// goCaches is the module and build cache of this machine's go command, as
// environment entries.
func goCaches(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	v := strings.Fields(string(out))
	if len(v) != 2 {
		t.Fatalf("go env GOMODCACHE GOCACHE: %q", out)
	}
	return []string{"GOMODCACHE=" + v[0], "GOCACHE=" + v[1]}
}
