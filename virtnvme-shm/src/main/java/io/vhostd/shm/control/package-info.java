/**
 * The master ↔ slave control channel: a {@code SOCK_SEQPACKET} unix socket carrying one JSON object per packet, with
 * file descriptors attached as {@code SCM_RIGHTS}. It is the control path only (controller hand-over, memory-region
 * registration, fd custody); the data path is the VirtNvme queue pair. Both roles use this package: the master owns
 * the listening socket, a slave connects to it and is identified by its peer credentials.
 *
 * <p>Wire format: {@code spec/control-channel.md} of this module.
 */
package io.vhostd.shm.control;
