package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/report"
)

// noticeView mirrors the API's NoticeView.
type noticeView struct {
	ID          string            `json:"id"`
	Kind        string            `json:"kind"`
	Issuer      string            `json:"issuer"`
	Provider    string            `json:"provider"`
	Reference   string            `json:"reference"`
	State       string            `json:"state"`
	Version     int64             `json:"version"`
	CreatedAt   time.Time         `json:"created_at"`
	DeliveredAt *time.Time        `json:"delivered_at"`
	Deadline    *time.Time        `json:"deadline"`
	Overdue     bool              `json:"overdue"`
	Ground      string            `json:"ground"`
	ActionAt    *time.Time        `json:"action_at"`
	InTime      *bool             `json:"in_time"`
	Timeline    []json.RawMessage `json:"timeline"`
	Attempts    []struct {
		N       int       `json:"n"`
		At      time.Time `json:"at"`
		Channel string    `json:"channel"`
		Status  int       `json:"status"`
		Seconds float64   `json:"seconds"`
		Error   string    `json:"error"`
	} `json:"attempts"`
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func cmdSubmit(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "submit", "[-f FILE | flags]", "Submits a notice, or every line of an NDJSON file (.ndjson or -ndjson).\nThe same notice again answers with the same id; the same reference with other content is refused.")
	file := fs.String("f", "", "a notice as JSON, or notices as NDJSON (one per line); - for standard input")
	ndjson := fs.Bool("ndjson", false, "read -f as NDJSON whatever its name")
	var n pipeline.Notice
	var urls, reasons stringList
	kind := fs.String("kind", "removal_order", "removal_order or referral")
	fs.StringVar(&n.Issuer, "issuer", "", "issuer id (yours)")
	fs.StringVar(&n.Reference, "reference", "", "your reference number")
	fs.StringVar(&n.Provider, "provider", "", "provider id")
	fs.StringVar(&n.MemberState, "member-state", "", "issuing Member State, e.g. DE")
	fs.Var(&urls, "url", "URL of the content; repeat for more")
	fs.Var(&reasons, "reason", "Art. 2(7) reason: incitement, solicitation, participation, instruction, threat; repeat")
	fs.StringVar(&n.Explanation, "explanation", "", "statement of reasons")
	fs.StringVar(&n.Language, "language", "", "language, e.g. de")
	fs.StringVar(&n.Contact.Email, "contact-email", "", "follow-up contact e-mail")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *file != "" {
		data, err := readInput(c, *file)
		if err != nil {
			return err
		}
		if *ndjson || strings.HasSuffix(*file, ".ndjson") || strings.HasSuffix(*file, ".jsonl") {
			return submitBatch(ctx, c, data)
		}
		return submitOne(ctx, c, data)
	}
	if n.Issuer == "" || n.Reference == "" || n.Provider == "" || len(urls) == 0 {
		return usagef("give -f FILE, or at least -issuer, -reference, -provider and -url")
	}
	n.Schema, n.Kind, n.IssuedAt = pipeline.NoticeSchema, pipeline.Kind(*kind), time.Now().UTC().Truncate(time.Second)
	for _, u := range urls {
		n.Content = append(n.Content, pipeline.ContentItem{URL: u})
	}
	for _, r := range reasons {
		n.Reasons = append(n.Reasons, pipeline.Reason(r))
	}
	if err := n.Validate(); err != nil {
		return usagef("%v", err)
	}
	data, _ := json.Marshal(n) // a Notice always marshals
	return submitOne(ctx, c, data)
}

func readInput(c *cli, file string) ([]byte, error) {
	if file == "-" {
		var b strings.Builder
		sc := bufio.NewScanner(c.stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		return []byte(b.String()), sc.Err()
	}
	data, err := os.ReadFile(filepath.Clean(file))
	if err != nil {
		return nil, usagef("%v", err)
	}
	return data, nil
}

type submitResult struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Duplicate bool   `json:"duplicate"`
}

func submitOne(ctx context.Context, c *cli, data []byte) error {
	var res submitResult
	if _, err := c.client.do(ctx, "POST", "/v1/notices", data, &res, nil); err != nil {
		return err
	}
	word := "accepted"
	if res.Duplicate {
		word = "duplicate of an accepted notice"
	}
	fmt.Fprintf(c.stdout, "%s %s (status: %s)\n", word, res.ID, res.Status)
	return nil
}

var errRejectedLines = errors.New("some lines were rejected")

// submitBatch submits NDJSON lines one by one with a progress bar on a
// terminal and a summary at the end.
func submitBatch(ctx context.Context, c *cli, data []byte) error {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var accepted, duplicate int
	var rejected []string
	tty := isTerminal(c.stderr)
	for i, line := range lines {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var res submitResult
		_, err := c.client.do(ctx, "POST", "/v1/notices", []byte(line), &res, nil)
		var ae *apiError
		switch {
		case err == nil && res.Duplicate:
			duplicate++
		case err == nil:
			accepted++
		case errors.As(err, &ae) && ae.status < 500:
			rejected = append(rejected, fmt.Sprintf("line %d: %s", i+1, strings.ReplaceAll(ae.Error(), "\n", ";")))
		default:
			return fmt.Errorf("line %d: %w (lines before it were submitted; resubmitting them is harmless)", i+1, err)
		}
		if tty {
			progress(c, i+1, len(lines))
		}
	}
	if tty {
		fmt.Fprintln(c.stderr)
	}
	fmt.Fprintf(c.stdout, "%d lines: %d accepted, %d duplicate, %d rejected\n", len(lines), accepted, duplicate, len(rejected))
	for _, r := range rejected {
		fmt.Fprintln(c.stdout, "  "+r)
	}
	if len(rejected) > 0 {
		return errRejectedLines
	}
	return nil
}

func progress(c *cli, done, total int) {
	const width = 30
	filled := width * done / max(total, 1)
	fmt.Fprintf(c.stderr, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat("-", width-filled), done, total)
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func cmdGet(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "get", "ID [-o json]", "Shows one notice: state, deadline, overdue, timeline of events and delivery attempts.")
	out := fs.String("o", "text", "text or json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give one notice id")
	}
	var raw json.RawMessage
	if _, err := c.client.do(ctx, "GET", "/v1/notices/"+url.PathEscape(pos[0]), nil, &raw, nil); err != nil {
		return err
	}
	if *out == "json" {
		_, err := fmt.Fprintln(c.stdout, string(raw))
		return err
	}
	var v noticeView
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "id\t%s\nkind\t%s\nissuer\t%s (reference %s)\nprovider\t%s\nstate\t%s\ndelivered\t%s\ndeadline\t%s\noverdue\t%v\n",
		v.ID, v.Kind, v.Issuer, v.Reference, v.Provider, v.State, fmtTime(v.DeliveredAt), fmtTime(v.Deadline), v.Overdue)
	if v.InTime != nil {
		fmt.Fprintf(w, "removed\t%s (in time: %v)\n", fmtTime(v.ActionAt), *v.InTime)
	}
	w.Flush()
	fmt.Fprintln(c.stdout, "\ntimeline:")
	for _, e := range v.Timeline {
		var ev pipeline.Event
		_ = json.Unmarshal(e, &ev)
		fmt.Fprintf(c.stdout, "  v%-3d %s  %-12s -> %s\n", ev.Version, ev.At.UTC().Format(time.RFC3339), ev.Type, ev.State)
	}
	if len(v.Attempts) > 0 {
		fmt.Fprintln(c.stdout, "\ndelivery attempts:")
		for _, a := range v.Attempts {
			status := "ok"
			if a.Error != "" {
				status = a.Error
			}
			fmt.Fprintf(c.stdout, "  #%d %s %s %.3fs %s\n", a.N, a.At.UTC().Format(time.RFC3339), a.Channel, a.Seconds, status)
		}
	}
	return nil
}

func cmdList(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "list", "[filters] [-o json]", "Lists notices newest first; issuers and providers see their own, operators all.")
	q := url.Values{}
	for _, f := range []struct{ name, usage string }{
		{"state", "only this state"}, {"provider", "only this provider"}, {"issuer", "only this issuer (operators)"},
		{"kind", "removal_order or referral"}, {"overdue", "true or false"}, {"from", "created at or after (RFC 3339)"}, {"to", "created before (RFC 3339)"},
	} {
		fs.Func(f.name, f.usage, func(v string) error { q.Set(f.name, v); return nil })
	}
	limit := fs.Int("limit", 50, "notices per page")
	all := fs.Bool("all", false, "follow next_cursor through every page")
	out := fs.String("o", "table", "table or json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	q.Set("limit", strconv.Itoa(*limit))
	var items []noticeView
	var raws []json.RawMessage
	for {
		var page struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor string            `json:"next_cursor"`
		}
		if _, err := c.client.do(ctx, "GET", "/v1/notices?"+q.Encode(), nil, &page, nil); err != nil {
			return err
		}
		for _, r := range page.Items {
			var v noticeView
			_ = json.Unmarshal(r, &v)
			items, raws = append(items, v), append(raws, r)
		}
		if !*all || page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	if *out == "json" {
		b, _ := json.MarshalIndent(raws, "", "  ")
		_, err := fmt.Fprintln(c.stdout, string(b))
		return err
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tKIND\tISSUER\tPROVIDER\tREFERENCE\tSTATE\tDEADLINE\tOVERDUE")
	for _, v := range items {
		overdue := ""
		if v.Overdue {
			overdue = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Kind, v.Issuer, v.Provider, v.Reference, v.State, fmtTime(v.Deadline), overdue)
	}
	return w.Flush()
}

func cmdWatch(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "watch", "[ID]", "Follows a notice's events live from its creation until it is terminal;\nwithout an id, follows all your events from now on (Ctrl-C to stop).")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	path := "/v1/events"
	if len(pos) == 1 {
		path += "?notice=" + url.QueryEscape(pos[0])
	} else if len(pos) > 1 {
		return usagef("give at most one notice id")
	}
	return c.client.stream(ctx, path, func(typ string, data []byte) {
		var e pipeline.Event
		if json.Unmarshal(data, &e) != nil {
			return
		}
		line := fmt.Sprintf("%s  %s  v%d %-12s -> %s", e.At.UTC().Format(time.RFC3339), e.NoticeID, e.Version, e.Type, e.State)
		if e.Deadline != nil {
			line += "  deadline " + e.Deadline.UTC().Format(time.RFC3339)
		}
		if e.InTime != nil {
			line += fmt.Sprintf("  in time: %v", *e.InTime)
		}
		fmt.Fprintln(c.stdout, line)
	})
}

func cmdWithdraw(ctx context.Context, c *cli, args []string) error {
	return action(ctx, c, args, "withdraw", "ID [-explanation TEXT]", "Withdraws an open notice of yours.", false)
}

func cmdClarify(ctx context.Context, c *cli, args []string) error {
	return action(ctx, c, args, "clarify", "ID -explanation TEXT", "Answers a provider's insufficient_info or manifest_error block; the clock restarts.", true)
}

func action(ctx context.Context, c *cli, args []string, name, usage, about string, needText bool) error {
	fs := flags(c, name, usage, about)
	text := fs.String("explanation", "", "explanation")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give one notice id")
	}
	if needText && *text == "" {
		return usagef("-explanation is required")
	}
	return applied(ctx, c, "/v1/notices/"+url.PathEscape(pos[0])+"/"+name, map[string]string{"explanation": *text})
}

func applied(ctx context.Context, c *cli, path string, body any) error {
	var res struct {
		NoticeID string `json:"notice_id"`
		Type     string `json:"type"`
		Result   string `json:"result"`
	}
	if _, err := c.client.do(ctx, "POST", path, body, &res, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s %s: %s\n", res.Type, res.NoticeID, res.Result)
	return nil
}

func cmdFeedback(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "feedback", "ID -provider P -type TYPE [flags]", "Reports on a notice as its provider: acknowledged, removed, disabled, blocked, declined, resumed.")
	f := pipeline.Feedback{Schema: pipeline.FeedbackSchema}
	fs.StringVar(&f.Provider, "provider", "", "your provider id")
	typ := fs.String("type", "", "acknowledged, removed, disabled, blocked, declined or resumed")
	actionAt := fs.String("action-at", "", "time of removal (RFC 3339; default now for removed and disabled)")
	ground := fs.String("ground", "", "for blocked: force_majeure, manifest_error or insufficient_info")
	fs.StringVar(&f.Explanation, "explanation", "", "explanation (required for blocked)")
	fs.StringVar(&f.ProviderReference, "provider-reference", "", "your own reference")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give one notice id")
	}
	f.NoticeID, f.Type, f.Ground = pos[0], pipeline.FeedbackType(*typ), pipeline.Ground(*ground)
	if f.Type == pipeline.FeedbackRemoved || f.Type == pipeline.FeedbackDisabled {
		t := time.Now().UTC().Truncate(time.Second)
		if *actionAt != "" {
			if t, err = time.Parse(time.RFC3339, *actionAt); err != nil {
				return usagef("-action-at: %v", err)
			}
		}
		f.ActionAt = &t
	}
	if err := f.Validate(); err != nil {
		return usagef("%v", err)
	}
	return applied(ctx, c, "/v1/notices/"+url.PathEscape(f.NoticeID)+"/feedback", f)
}

func cmdSummary(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "summary", "", "Notices per state, open notices, overdue by provider, events not yet relayed.")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var s struct {
		ByState           map[string]int64 `json:"by_state"`
		Open              int64            `json:"open"`
		OverdueByProvider map[string]int64 `json:"overdue_by_provider"`
		Outbox            int64            `json:"outbox"`
	}
	if _, err := c.client.do(ctx, "GET", "/v1/summary", nil, &s, nil); err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, st := range pipeline.States {
		fmt.Fprintf(w, "%s\t%d\n", st, s.ByState[string(st)])
	}
	fmt.Fprintf(w, "open\t%d\noutbox\t%d\n", s.Open, s.Outbox)
	for p, n := range s.OverdueByProvider {
		fmt.Fprintf(w, "overdue at %s\t%d\n", p, n)
	}
	return w.Flush()
}

func cmdParked(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "parked", "[-source intake|feedback] [-o json]", "Lists messages that could not be processed, with the reason.")
	source := fs.String("source", "", "intake or feedback")
	out := fs.String("o", "table", "table or json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	q := url.Values{}
	if *source != "" {
		q.Set("source", *source)
	}
	var page struct {
		Items []struct {
			Sequence        uint64    `json:"sequence"`
			OriginalSubject string    `json:"original_subject"`
			Reason          string    `json:"reason"`
			Detail          string    `json:"detail"`
			ParkedAt        time.Time `json:"parked_at"`
		} `json:"items"`
	}
	var raw json.RawMessage
	if _, err := c.client.do(ctx, "GET", "/v1/parked?"+q.Encode(), nil, &raw, nil); err != nil {
		return err
	}
	if *out == "json" {
		_, err := fmt.Fprintln(c.stdout, string(raw))
		return err
	}
	_ = json.Unmarshal(raw, &page)
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "SEQ\tPARKED\tSUBJECT\tREASON\tDETAIL")
	for _, p := range page.Items {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", p.Sequence, p.ParkedAt.UTC().Format(time.RFC3339), p.OriginalSubject, p.Reason, p.Detail)
	}
	return w.Flush()
}

func cmdReplay(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "replay", "ID | -parked SEQ", "Sends a failed notice through delivery again, or republishes a parked message\nto its original subject and removes it from the parked stream.")
	parked := fs.Uint64("parked", 0, "sequence of a parked message")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *parked != 0 && len(pos) == 0:
		var res map[string]any
		if _, err := c.client.do(ctx, "POST", "/v1/parked/"+strconv.FormatUint(*parked, 10)+"/replay", nil, &res, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "parked message %d republished to %v\n", *parked, res["republished_to"])
		return nil
	case *parked == 0 && len(pos) == 1:
		return applied(ctx, c, "/v1/notices/"+url.PathEscape(pos[0])+"/replay", nil)
	}
	return usagef("give a notice id, or -parked SEQ")
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func cmdReport(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "report", "-from TIME -to TIME [-format md|csv|json]", "Counts per issuer and per provider for a period, computed from the events audit log:\norders and referrals received and delivered, removed within the hour, late,\nblocked by ground, declined, withdrawn, median and p90 time to removal.\nOperators see everything; issuers and providers their own notices.")
	from := fs.String("from", "", "start of the period (RFC 3339, or a date such as 2026-01-01)")
	to := fs.String("to", "", "end of the period, exclusive (RFC 3339 or a date)")
	format := fs.String("format", "md", "md, csv or json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	start, err := parseWhen(*from)
	if err != nil {
		return usagef("-from: %v", err)
	}
	end, err := parseWhen(*to)
	if err != nil {
		return usagef("-to: %v", err)
	}
	if *format != "md" && *format != "csv" && *format != "json" {
		return usagef("-format must be md, csv or json")
	}
	q := url.Values{"from": {start.Format(time.RFC3339)}, "to": {end.Format(time.RFC3339)}}
	var r report.Report
	if _, err := c.client.do(ctx, "GET", "/v1/report?"+q.Encode(), nil, &r, nil); err != nil {
		return err
	}
	switch *format {
	case "csv":
		return r.CSV(c.stdout)
	case "json":
		return r.JSON(c.stdout)
	}
	return r.Markdown(c.stdout)
}

func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("required")
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}
