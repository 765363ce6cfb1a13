/**
 * The vhost-user inflight region ({@code VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD}, vhost-user.rst "Inflight I/O
 * tracking"; normative summary in {@code journal/spec/journal.md} §9): a buffer the back-end allocates and the
 * front-end (QEMU) keeps across a back-end restart, so that requests in flight when the whole daemon died are
 * resubmitted after QEMU reconnects.
 *
 * <p>Role: back-end (the vhostd slave writes it per request and recovers it when a queue starts). The layout is the
 * specification's, byte for byte ({@link io.vhostd.journal.inflight.InflightRegionDescriptor}); the split writer is
 * {@link io.vhostd.journal.inflight.InflightRegionSplit}, the packed one {@link
 * io.vhostd.journal.inflight.InflightRegionPacked}.
 */
package io.vhostd.journal.inflight;
