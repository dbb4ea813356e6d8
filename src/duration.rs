//! Go-style durations (`720h`, `1h30m`, `90s`), the form Kubernetes CEL's `duration()` accepts.
