/**
 * The cross-process journal (DESIGN §3): shared memory owned by the master that lets a replacement slave resume a
 * crashed slave's sessions, and the vhost-user inflight region ({@code VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD}). Empty in
 * the walking skeleton: its layout ({@code journal/spec/journal.md}) and code arrive with issue #4.
 *
 * <p>Roles: master (owner) and slave (writer).
 */
package io.vhostd.journal;
