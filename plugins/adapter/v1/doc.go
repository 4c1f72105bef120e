// Package adapterv1 is the generated gRPC code for adapter.proto, the wire
// between the gatelog daemon and an adapter process. Regenerate it with
// gen.sh (make proto); use it through package plugins/adapter, not directly.
package adapterv1
