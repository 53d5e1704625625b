package api_test

import (
	"bufio"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/api"
)

// TestOpenAPIMatchesRoutes fails when a route exists that the document
// lacks, or the other way round.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t, 0, 0)
	var served, documented []string
	for _, r := range e.api.Routes() {
		served = append(served, r.Method+" "+r.Pattern)
	}
	for path, ops := range e.doc["paths"].(map[string]any) {
		for method := range ops.(map[string]any) {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	if diff := cmp.Diff(documented, served); diff != "" {
		t.Errorf("routes (-documented +served):\n%s", diff)
	}
	r := e.do("", "GET", "/v1/openapi.json", "/v1/openapi.json", nil)
	if r.status != 200 || r.body["openapi"] != "3.1.0" {
		t.Fatalf("openapi.json: %d", r.status)
	}
}

// TestEveryRouteAsEveryPrincipal tries each route as nobody, as each kind of
// principal, and as a principal of the right kind but not the owner.
func TestEveryRouteAsEveryPrincipal(t *testing.T) {
	e := newEnv(t, 0, 0)
	id := e.submitted("de-bka", "AUTH-1", "videohost")
	principals := []string{"", "issuer:de-bka", "issuer:fr-pharos", "provider:videohost", "provider:filedrop", "operator:ops"}
	type req struct {
		method, pattern, path string
		body                  any
		// want is the status per principal; missing means "any but 401 and 403".
		want map[string]int
	}
	denied := func(allowed ...string) map[string]int {
		m := map[string]int{"": 401}
		for _, p := range principals[1:] {
			kind := strings.Split(p, ":")[0]
			if !slices.Contains(allowed, kind) {
				m[p] = 403
			}
		}
		return m
	}
	with := func(m map[string]int, extra map[string]int) map[string]int {
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	reqs := []req{
		{"GET", "/v1/openapi.json", "/v1/openapi.json", nil, map[string]int{"": 200, "issuer:de-bka": 200, "operator:ops": 200}},
		{"POST", "/v1/notices", "/v1/notices", notice("de-bka", "AUTH-2", "videohost"), with(denied("issuer"), map[string]int{"issuer:de-bka": 202, "issuer:fr-pharos": 403})},
		{"GET", "/v1/notices", "/v1/notices", nil, with(denied("issuer", "provider", "operator"), map[string]int{"issuer:de-bka": 200, "provider:filedrop": 200})},
		{"GET", "/v1/notices/{id}", "/v1/notices/" + id, nil, with(denied("issuer", "provider", "operator"),
			map[string]int{"issuer:de-bka": 200, "issuer:fr-pharos": 404, "provider:videohost": 200, "provider:filedrop": 404, "operator:ops": 200})},
		{"POST", "/v1/notices/{id}/clarify", "/v1/notices/" + id + "/clarify", map[string]string{"explanation": "x"},
			with(denied("issuer"), map[string]int{"issuer:de-bka": 409, "issuer:fr-pharos": 404})},
		{"POST", "/v1/notices/{id}/feedback", "/v1/notices/" + id + "/feedback", fbBody(id, "filedrop", "acknowledged"),
			with(denied("provider"), map[string]int{"provider:videohost": 403, "provider:filedrop": 404})},
		{"POST", "/v1/notices/{id}/replay", "/v1/notices/" + id + "/replay", nil, with(denied("operator"), map[string]int{"operator:ops": 409})},
		{"GET", "/v1/parked", "/v1/parked", nil, with(denied("operator"), map[string]int{"operator:ops": 200})},
		{"POST", "/v1/parked/{seq}/replay", "/v1/parked/999/replay", nil, with(denied("operator"), map[string]int{"operator:ops": 404})},
		{"GET", "/v1/summary", "/v1/summary", nil, with(denied("operator"), map[string]int{"operator:ops": 200})},
		{"GET", "/v1/report", "/v1/report?from=2026-06-01T00:00:00Z&to=2027-06-01T00:00:00Z", nil, with(denied("issuer", "provider", "operator"),
			map[string]int{"issuer:de-bka": 200, "provider:filedrop": 200, "operator:ops": 200})},
		{"GET", "/v1/events", "/v1/events?notice=" + pipeline.NoticeID("de-bka", "none"), nil, with(denied("issuer", "provider", "operator"),
			map[string]int{"issuer:de-bka": 404, "issuer:fr-pharos": 404, "provider:videohost": 404, "provider:filedrop": 404, "operator:ops": 404})},
		{"POST", "/v1/notices/{id}/withdraw", "/v1/notices/" + id + "/withdraw", nil,
			with(denied("issuer"), map[string]int{"issuer:fr-pharos": 404, "issuer:de-bka": 200})},
	}
	served := map[string]bool{}
	for _, r := range reqs {
		served[r.method+" "+r.pattern] = true
		for _, p := range principals {
			got := e.do(p, r.method, r.pattern, r.path, r.body)
			want, fixed := r.want[p]
			switch {
			case fixed && got.status != want:
				t.Errorf("%s %s as %q: %d, want %d: %s", r.method, r.path, p, got.status, want, got.raw)
			case !fixed && (got.status == 401 || got.status == 403):
				t.Errorf("%s %s as %q: %d, want access", r.method, r.path, p, got.status)
			}
		}
	}
	for _, r := range e.api.Routes() {
		if !served[r.Method+" "+r.Pattern] {
			t.Errorf("route %s %s not tried", r.Method, r.Pattern)
		}
	}
}

func TestSubmitDuplicateConflictAndGet(t *testing.T) {
	e := newEnv(t, 0, 0)
	n := notice("de-bka", "SUB-1", "videohost")
	r := e.do("issuer:de-bka", "POST", "/v1/notices", "/v1/notices", n)
	if r.status != 202 || r.body["id"] != n.ID() || r.header.Get("Location") != "/v1/notices/"+n.ID() {
		t.Fatalf("submit: %d %s", r.status, r.raw)
	}
	e.waitState(n.ID(), pipeline.StateDelivered)
	r = e.do("issuer:de-bka", "POST", "/v1/notices", "/v1/notices", n)
	if r.status != 200 || r.body["id"] != n.ID() || r.body["duplicate"] != true {
		t.Fatalf("same notice again: %d %s", r.status, r.raw)
	}
	changed := n
	changed.Explanation = "something else"
	if r = e.do("issuer:de-bka", "POST", "/v1/notices", "/v1/notices", changed); r.status != 409 {
		t.Fatalf("conflicting notice: %d %s", r.status, r.raw)
	}
	bad := notice("de-bka", "SUB-2", "nosuch")
	bad.Content = nil
	r = e.do("issuer:de-bka", "POST", "/v1/notices", "/v1/notices", bad)
	if r.status != 400 || !strings.Contains(string(r.raw), `"field":"content"`) {
		t.Fatalf("invalid notice: %d %s", r.status, r.raw)
	}
	if r = e.do("issuer:de-bka", "POST", "/v1/notices", "/v1/notices", notice("de-bka", "SUB-3", "nosuch")); r.status != 400 {
		t.Fatalf("unknown provider: %d %s", r.status, r.raw)
	}
	if r = e.do("issuer:de-bka", "POST", "/v1/notices", "/v1/notices", `{"schema":"takedown.notice/v1","x":1}`); r.status != 400 {
		t.Fatalf("unknown field: %d", r.status)
	}
	if r = e.do("issuer:de-bka", "POST", "/v1/notices", "/v1/notices", strings.Repeat("x", pipeline.MaxNoticeBytes+1)); r.status != 413 {
		t.Fatalf("oversized: %d", r.status)
	}

	e.do("provider:videohost", "POST", "/v1/notices/{id}/feedback", "/v1/notices/"+n.ID()+"/feedback", fbBody(n.ID(), "videohost", "removed"))
	testenv.WaitFor(t, 10*time.Second, "removal relayed", func() bool {
		r = e.do("issuer:de-bka", "GET", "/v1/notices/{id}", "/v1/notices/"+n.ID(), nil)
		return len(r.body["timeline"].([]any)) == 3
	})
	if r.body["state"] != "removed" || r.body["in_time"] != true || r.body["notice"].(map[string]any)["reference"] != "SUB-1" {
		t.Errorf("view: %s", r.raw)
	}
	if att := r.body["attempts"].([]any); len(att) != 1 || att[0].(map[string]any)["channel"] != "nats" {
		t.Errorf("attempts: %v", att)
	}
}

func TestListFiltersAndPaging(t *testing.T) {
	e := newEnv(t, 0, 0)
	for i := range 7 {
		e.submitted("de-bka", "LIST-"+string(rune('a'+i)), []string{"videohost", "filedrop"}[i%2])
	}
	e.submitted("fr-pharos", "LIST-other", "videohost")
	var ids []string
	path := "/v1/notices?limit=3"
	for {
		r := e.do("issuer:de-bka", "GET", "/v1/notices", path, nil)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		for _, it := range r.body["items"].([]any) {
			ids = append(ids, it.(map[string]any)["issuer"].(string))
		}
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			break
		}
		path = "/v1/notices?limit=3&cursor=" + next
	}
	if len(ids) != 7 || slices.Contains(ids, "fr-pharos") {
		t.Errorf("issuer listing: %v", ids)
	}
	r := e.do("provider:videohost", "GET", "/v1/notices", "/v1/notices?state=delivered", nil)
	if n := len(r.body["items"].([]any)); n != 5 {
		t.Errorf("videohost sees %d notices, want 5 (4 of de-bka, 1 of fr-pharos)", n)
	}
	r = e.do("operator:ops", "GET", "/v1/notices", "/v1/notices?provider=filedrop&kind=removal_order&overdue=false", nil)
	if n := len(r.body["items"].([]any)); n != 3 {
		t.Errorf("operator filtered listing: %d, want 3", n)
	}
	r = e.do("issuer:de-bka", "GET", "/v1/notices", "/v1/notices?state=lost&limit=0&from=yesterday&issuer=fr-pharos", nil)
	if r.status != 400 {
		t.Fatalf("bad query: %d", r.status)
	}
	var fields []string
	for _, f := range r.body["errors"].([]any) {
		fields = append(fields, f.(map[string]any)["field"].(string))
	}
	slices.Sort(fields)
	if diff := cmp.Diff([]string{"from", "issuer", "limit", "state"}, fields); diff != "" {
		t.Errorf("query errors (-want +got):\n%s", diff)
	}
}

func TestActionsFeedbackReplayAndSummary(t *testing.T) {
	e := newEnv(t, 0, 0)
	ctx := context.Background()
	a := e.submitted("de-bka", "ACT-1", "videohost")
	b := e.submitted("de-bka", "ACT-2", "videohost")
	path := "/v1/notices/" + a + "/feedback"
	blocked := fbBody(a, "videohost", "blocked")
	blocked["ground"], blocked["explanation"] = "insufficient_info", "which account?"
	if r := e.do("provider:videohost", "POST", "/v1/notices/{id}/feedback", path, blocked, "Idempotency-Key", "k1"); r.status != 200 || r.body["result"] != "applied" {
		t.Fatalf("blocked: %d %s", r.status, r.raw)
	}
	if r := e.do("provider:videohost", "POST", "/v1/notices/{id}/feedback", path, blocked, "Idempotency-Key", "k1"); r.status != 200 || r.body["result"] != "duplicate" {
		t.Fatalf("repeated: %d %s", r.status, r.raw)
	}
	if r := e.do("issuer:de-bka", "POST", "/v1/notices/{id}/clarify", "/v1/notices/"+a+"/clarify", map[string]string{}); r.status != 400 {
		t.Fatalf("clarify without explanation: %d", r.status)
	}
	if r := e.do("issuer:de-bka", "POST", "/v1/notices/{id}/clarify", "/v1/notices/"+a+"/clarify", map[string]string{"explanation": "account 'x'"}); r.status != 200 {
		t.Fatalf("clarify: %d %s", r.status, r.raw)
	}
	e.waitState(a, pipeline.StateAcknowledged)
	if r := e.do("issuer:de-bka", "POST", "/v1/notices/{id}/withdraw", "/v1/notices/"+b+"/withdraw", map[string]string{"explanation": "sent in error"}); r.status != 200 {
		t.Fatalf("withdraw: %d %s", r.status, r.raw)
	}
	if r := e.do("provider:videohost", "POST", "/v1/notices/{id}/feedback", "/v1/notices/"+b+"/feedback", fbBody(b, "videohost", "removed")); r.status != 409 {
		t.Fatalf("removal of a withdrawn notice: %d", r.status)
	}

	// A failed notice, replayed by an operator.
	f := notice("de-bka", "ACT-3", "videohost")
	if _, err := e.store.Create(ctx, &f, testenv.JSON(f), time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Fail(ctx, f.ID(), "", 0, time.Now(), "test", nil); err != nil {
		t.Fatal(err)
	}
	if r := e.do("operator:ops", "POST", "/v1/notices/{id}/replay", "/v1/notices/"+f.ID()+"/replay", nil); r.status != 200 {
		t.Fatalf("replay: %d %s", r.status, r.raw)
	}
	r := e.do("operator:ops", "GET", "/v1/summary", "/v1/summary", nil)
	want := map[string]any{"acknowledged": 1.0, "withdrawn": 1.0, "received": 1.0}
	for k, v := range want {
		if r.body["by_state"].(map[string]any)[k] != v {
			t.Errorf("summary %s = %v, want %v (%s)", k, r.body["by_state"].(map[string]any)[k], v, r.raw)
		}
	}
}

func TestParkedListAndReplay(t *testing.T) {
	e := newEnv(t, 0, 0)
	ctx := context.Background()
	// A notice for a provider the directory does not know is parked.
	if err := e.bus.PublishIntake(ctx, "de-bka", "p1", testenv.JSON(notice("de-bka", "PARK-1", "nosuch"))); err != nil {
		t.Fatal(err)
	}
	var r response
	testenv.WaitFor(t, 10*time.Second, "parked", func() bool {
		r = e.do("operator:ops", "GET", "/v1/parked", "/v1/parked?source=intake", nil)
		return len(r.body["items"].([]any)) == 1
	})
	item := r.body["items"].([]any)[0].(map[string]any)
	if item["reason"] != "unknown_provider" || item["original_subject"] != "takedown.intake.de-bka" {
		t.Fatalf("parked item %v", item)
	}
	seq := int(item["sequence"].(float64))
	if r = e.do("operator:ops", "POST", "/v1/parked/{seq}/replay", "/v1/parked/"+strconv.Itoa(seq)+"/replay", nil); r.status != 200 {
		t.Fatalf("replay: %d %s", r.status, r.raw)
	}
	// Still unknown, so it is parked again under a new sequence; the old
	// one is gone.
	testenv.WaitFor(t, 10*time.Second, "parked again", func() bool {
		r = e.do("operator:ops", "GET", "/v1/parked", "/v1/parked", nil)
		items := r.body["items"].([]any)
		return len(items) == 1 && int(items[0].(map[string]any)["sequence"].(float64)) != seq
	})
	if r = e.do("operator:ops", "GET", "/v1/parked", "/v1/parked?source=queue", nil); r.status != 400 {
		t.Errorf("bad source: %d", r.status)
	}
}

func TestRateLimitPerPrincipal(t *testing.T) {
	e := newEnv(t, 0.5, 2)
	for i := 0; i < 2; i++ {
		if r := e.do("operator:ops", "GET", "/v1/summary", "/v1/summary", nil); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	r := e.do("operator:ops", "GET", "/v1/summary", "/v1/summary", nil)
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	// Another principal has its own budget.
	if r := e.do("issuer:de-bka", "GET", "/v1/notices", "/v1/notices", nil); r.status != 200 {
		t.Fatalf("other principal: %d", r.status)
	}
}

func TestEventsStreamFollowsANoticeUntilTerminal(t *testing.T) {
	e := newEnv(t, 0, 0)
	id := e.submitted("de-bka", "SSE-1", "videohost")
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/events?notice="+id, nil)
	req.Header.Set("Authorization", "Bearer "+tokens["issuer:de-bka"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	e.do("provider:videohost", "POST", "/v1/notices/{id}/feedback", "/v1/notices/"+id+"/feedback", fbBody(id, "videohost", "removed"))
	var types []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() { // ends when the server closes the stream after the terminal event
		if typ, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			types = append(types, typ)
		}
	}
	if diff := cmp.Diff([]string{"received", "delivered", "removed"}, types); diff != "" {
		t.Errorf("streamed events (-want +got):\n%s", diff)
	}
}

func TestTokenDigest(t *testing.T) {
	if got := api.TokenDigest(""); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("digest of the empty token %s", got)
	}
}

// fuzzPost sends body as principal and fails on any server error but 503
// (which a client is told to retry).
func fuzzPost(t *testing.T, url, principal, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tokens[principal])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 && resp.StatusCode != 503 {
		t.Fatalf("status %d for %q", resp.StatusCode, body)
	}
}

func FuzzFeedbackBody(f *testing.F) {
	f.Add(`{"schema":"takedown.feedback/v1","notice_id":"` + pipeline.NoticeID("de-bka", "x") + `","provider":"videohost","type":"acknowledged"}`)
	f.Add(`{"schema":"takedown.feedback/v1"}`)
	srv := fuzzServer(f)
	url := srv.URL + "/v1/notices/" + pipeline.NoticeID("de-bka", "fuzz") + "/feedback"
	f.Fuzz(func(t *testing.T, body string) { fuzzPost(t, url, "provider:videohost", body) })
}

func FuzzNoticeBody(f *testing.F) {
	f.Add(string(testenv.JSON(notice("de-bka", "F-1", "videohost"))))
	f.Add(`{"schema":"takedown.notice/v1","kind":"referral"}`)
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) { fuzzPost(t, srv.URL+"/v1/notices", "issuer:de-bka", body) })
}

// The response validation itself must catch a body that breaks the
// document, or the checks above would prove nothing.
func TestResponseValidationCatchesMismatches(t *testing.T) {
	e := newEnv(t, 0, 0)
	sch, err := e.comp.Compile("openapi.json#/components/schemas/NoticeView")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"id":"x"}`, `{"id":"x","kind":"order","issuer":"a","provider":"b","reference":"r","state":"received","version":1,"created_at":"2026-11-27T10:00:00Z","overdue":false}`} {
		inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if sch.Validate(inst) == nil {
			t.Errorf("%s validated", bad)
		}
	}
}

func TestReportFromTheEventsLog(t *testing.T) {
	e := newEnv(t, 0, 0)
	from := time.Now().Add(-time.Minute).UTC()
	a := e.submitted("de-bka", "REP-1", "videohost")
	e.submitted("fr-pharos", "REP-2", "filedrop")
	e.do("provider:videohost", "POST", "/v1/notices/{id}/feedback", "/v1/notices/"+a+"/feedback", fbBody(a, "videohost", "removed"))
	to := time.Now().Add(time.Minute).UTC()
	path := "/v1/report?from=" + from.Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339)
	var r response
	testenv.WaitFor(t, 10*time.Second, "removal in the report", func() bool {
		r = e.do("operator:ops", "GET", "/v1/report", path, nil)
		return r.status == 200 && r.body["total"].(map[string]any)["orders_removed_in_time"] == 1.0
	})
	if r.body["total"].(map[string]any)["orders_received"] != 2.0 || len(r.body["issuers"].([]any)) != 2 {
		t.Errorf("operator report: %s", r.raw)
	}
	r = e.do("issuer:de-bka", "GET", "/v1/report", path, nil)
	issuers := r.body["issuers"].([]any)
	if len(issuers) != 1 || issuers[0].(map[string]any)["name"] != "de-bka" {
		t.Errorf("an issuer's report shows others: %s", r.raw)
	}
	if r = e.do("operator:ops", "GET", "/v1/report", "/v1/report?from=yesterday", nil); r.status != 400 {
		t.Errorf("bad period: %d", r.status)
	}
}
