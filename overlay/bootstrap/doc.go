// Package bootstrap finds the first peers a starting node joins through: a
// static seed list (Static), the SRV records of a bootstrap domain (DNSSRV)
// and link-local multicast discovery for a LAN with no seed (LinkLocal, and
// the Responder a node runs so others can find it). Every provider is a
// Provider; Gather merges what several of them return.
package bootstrap
