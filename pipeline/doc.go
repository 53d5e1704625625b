// Package pipeline holds the domain of takedown: removal orders and referrals
// (Notice), what providers answer (Feedback), what issuers do afterwards
// (Action), the audit record of every change (Event), the states a notice
// moves through, the directory of issuers and providers, and the follow-up
// policy that decides when a notice is reminded, redelivered or escalated.
//
// It imports nothing else of this module, so every adapter (Redis in tracker,
// JetStream in pipeline/bus, delivery in notifier) speaks these types.
//
// Decoding outside input always goes through the Decode functions, which
// refuse oversized bodies and unknown fields and report every wrong field:
//
//	n, err := pipeline.DecodeNotice(body)
//	var verr *pipeline.ValidationError
//	if errors.As(err, &verr) {
//		for _, f := range verr.Fields {
//			log.Printf("%s: %s", f.Field, f.Problem)
//		}
//	}
//	id := n.ID() // UUIDv5 over (issuer, reference)
package pipeline
