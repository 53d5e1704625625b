# takedown — make targets. Prerequisites: Go and redis-server on PATH.
GO      ?= go
BIN     ?= bin
# An execution count, not a duration: a duration-based -fuzztime can end in a
# spurious "context deadline exceeded" on Go 1.26 (go.dev/issue/75804).
FUZZTIME ?= 20000x
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test lint fuzz bench demo clean check-redis

all: build

## build: compile takedownd, providersim and takedown-demo into bin/
build:
	$(GO) build -o $(BIN)/ ./cmd/...

check-redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server is not on PATH. Install it: apt-get install redis-server (Debian/Ubuntu), brew install redis (macOS)."; exit 1; }

## test: every test, with the race detector, against an embedded NATS and real redis-server children
test: check-redis
	$(GO) test -race -count=1 -timeout 20m ./...

## lint: formatting, go vet and staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## fuzz: run each fuzz target for FUZZTIME executions
fuzz:
	@for t in FuzzDecodeNotice FuzzDecodeFeedback FuzzDecodeIntake FuzzParseDirectory FuzzAppendJSONString; do \
	  $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./pipeline/ || exit 1; done
	@for t in FuzzParseConfig FuzzEventID; do \
	  $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./cmd/takedownd/ || exit 1; done
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./notifier/signature/
	$(GO) test -run '^$$' -fuzz '^FuzzRebuild$$' -fuzztime $(FUZZTIME) ./tracker/
	@for t in FuzzFeedbackBody FuzzNoticeBody; do \
	  $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./pipeline/api/ || exit 1; done

## bench: micro-benchmarks of the hot paths, then the load run (raw ceilings, end to end, open loop,
## Redis memory, scheduler with 1,000,000 open notices); BENCH_FLAGS passes flags to takedown-bench
bench: check-redis build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./pipeline/ ./tracker/ ./notifier/...
	$(BIN)/takedown-bench $(BENCH_FLAGS)

## demo: the pipeline end to end for about a minute, with a summary
demo: check-redis build
	$(BIN)/takedown-demo

clean:
	rm -rf $(BIN)
