package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * A payload that can be written after a {@link VhostUserHeader}. Each implementation also has a static {@code
 * decode(int requestId, MemorySegment payload)} that takes the exact payload bytes (the segment's size is the header's
 * {@code size}) and checks their syntax.
 */
public sealed interface VhostUserPayload
        permits VhostUserU64,
                VhostUserVringFd,
                VhostUserVringState,
                VhostUserVringAddr,
                VhostUserMemoryRegion,
                VhostUserMemory,
                VhostUserMemRegMsg,
                VhostUserLog,
                VhostUserConfig,
                VhostUserInflight {

    /** Encoded length in bytes: the header's {@code size} field. */
    int sizeBytes();

    /**
     * Writes the payload at offset 0 of {@code dst}.
     *
     * @throws IndexOutOfBoundsException if {@code dst} is shorter than {@link #sizeBytes()}
     */
    void encode(MemorySegment dst);
}
