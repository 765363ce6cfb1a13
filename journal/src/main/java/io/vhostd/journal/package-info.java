/**
 * The cross-process journal (DESIGN §3, normative layout {@code journal/spec/journal.md}): shared memory owned by the
 * master that lets a replacement slave resume a dead slave's session without the guest noticing: the negotiated
 * features, the memory table, the vrings, and per virtqueue the last avail index, the used index and the requests in
 * flight in fetch order (with copies of fetched entries where the guest may reuse its slots early).
 *
 * <p>{@link io.vhostd.journal.JournalDescriptor} is the layout; {@link io.vhostd.journal.SessionJournal} the slave's
 * writer; {@link io.vhostd.journal.JournalRecovery} the reader a replacement slave runs on the region a dead one left.
 * The vhost-user inflight region ({@code VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD}) is in {@link
 * io.vhostd.journal.inflight}.
 *
 * <p>Roles: the master owns (allocates, formats and keeps) the journal region; a slave writes it; the replacement
 * slave recovers it. Nothing here makes system calls: callers pass mapped {@link java.lang.foreign.MemorySegment}s.
 */
package io.vhostd.journal;
