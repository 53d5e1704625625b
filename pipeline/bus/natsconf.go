package bus

import (
	"fmt"
	"strings"

	"github.com/takedown-eu/takedown/pipeline"
)

// AuthConfig is what RenderAuthorization needs besides the directory.
type AuthConfig struct {
	// Prefix is the subject prefix. Default "takedown".
	Prefix string
	// PipelineNKey is the public NKey of takedownd itself, which may use
	// every subject.
	PipelineNKey string
}

// InboxPrefix is the inbox prefix a principal's NATS client must use
// (nats.CustomInboxPrefix): replies, JetStream acks included, reach it only
// there, so no principal can read another's replies.
func InboxPrefix(id string) string { return "_INBOX_" + id }

// RenderAuthorization renders the authorization block of a NATS server
// configuration from the directory: one NKey user per issuer and provider
// that has nats_nkey, with subject permissions that let
//
//   - an issuer publish only on its own intake subject, and read its own
//     events and its own parked submissions through consumers filtered to
//     them;
//   - a provider read only its own deliver subject, through its own durable
//     consumer "provider-<id>", and publish only its own feedback subject;
//   - takedownd (PipelineNKey) use every subject.
func RenderAuthorization(dir *pipeline.Directory, cfg AuthConfig) (string, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "takedown"
	}
	if cfg.PipelineNKey == "" {
		return "", fmt.Errorf("nats config: the pipeline's own NKey is required")
	}
	p := cfg.Prefix
	up := strings.ToUpper(p)
	var b strings.Builder
	b.WriteString("# NATS authorization for takedown, rendered from the directory by\n")
	b.WriteString("# `takedownd nats-config`. Each principal connects with its NKey seed and\n")
	b.WriteString("# the inbox prefix _INBOX_<id> (nats.CustomInboxPrefix).\n")
	b.WriteString("authorization {\n  users = [\n")
	user := func(comment, nkey string, pub, sub []string) {
		fmt.Fprintf(&b, "    # %s\n    {\n      nkey: %s\n      permissions: {\n", comment, nkey)
		fmt.Fprintf(&b, "        publish: { allow: [%s] }\n", quoteAll(pub))
		fmt.Fprintf(&b, "        subscribe: { allow: [%s] }\n", quoteAll(sub))
		b.WriteString("      }\n    }\n")
	}
	user("takedownd: every subject", cfg.PipelineNKey, []string{">"}, []string{">"})
	for _, is := range dir.Issuers {
		if is.NATSNKey == "" {
			continue
		}
		id := is.ID
		events := fmt.Sprintf("%s.events.%s.>", p, id)
		parked := fmt.Sprintf("%s.parked.intake.%s", p, id)
		user("issuer "+id, is.NATSNKey, []string{
			fmt.Sprintf("%s.intake.%s", p, id),
			fmt.Sprintf("$JS.API.CONSUMER.CREATE.%s_EVENTS.*.%s", up, events),
			fmt.Sprintf("$JS.API.CONSUMER.CREATE.%s_PARKED.*.%s", up, parked),
			fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s_EVENTS.*", up),
			fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s_PARKED.*", up),
			fmt.Sprintf("$JS.API.CONSUMER.INFO.%s_EVENTS.*", up),
			fmt.Sprintf("$JS.API.CONSUMER.DELETE.%s_EVENTS.*", up),
			fmt.Sprintf("$JS.ACK.%s_EVENTS.>", up),
		}, []string{InboxPrefix(id) + ".>"})
	}
	for _, pr := range dir.Providers {
		if pr.NATSNKey == "" {
			continue
		}
		id := pr.ID
		durable := "provider-" + id
		user("provider "+id, pr.NATSNKey, []string{
			fmt.Sprintf("%s.feedback.%s", p, id),
			fmt.Sprintf("$JS.API.CONSUMER.CREATE.%s_DELIVER.%s.%s.deliver.%s", up, durable, p, id),
			fmt.Sprintf("$JS.API.CONSUMER.INFO.%s_DELIVER.%s", up, durable),
			fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s_DELIVER.%s", up, durable),
			fmt.Sprintf("$JS.ACK.%s_DELIVER.%s.>", up, durable),
			fmt.Sprintf("$JS.API.CONSUMER.CREATE.%s_EVENTS.*.%s.events.*.%s.>", up, p, id),
			fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s_EVENTS.*", up),
			fmt.Sprintf("$JS.ACK.%s_EVENTS.>", up),
		}, []string{InboxPrefix(id) + ".>"})
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
