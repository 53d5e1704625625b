// Package worker runs the pipeline's roles: the intake worker (records
// notices from issuers and delivers them), the feedback worker (applies
// what providers report), the scheduler (reminders, redelivery, escalation
// and follow-ups against each notice's deadline) and the relay (publishes
// each shard's outbox to the events stream in version order).
//
// Each role is a struct with its dependencies as fields and a Run method
// that blocks until its context ends and then drains in-flight work:
//
//	in := &worker.Intake{Bus: b, Store: st, Delivery: d, Dir: dir, Clock: clk, Metrics: m, Logger: log}
//	go in.Run(ctx)
//
// The tracker and delivery dependencies are small interfaces owned here;
// *tracker.Store and *notifier.Notifier implement them.
package worker
