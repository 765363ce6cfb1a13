package io.vhostd.journal.inflight;

/**
 * A copy of one packed-ring descriptor as {@code DescStatePacked} keeps it.
 *
 * @param addr the buffer address
 * @param len the buffer length (u32)
 * @param id the buffer id (u16)
 * @param flags the descriptor flags (u16)
 */
public record InflightDesc(long addr, int len, int id, int flags) {}
