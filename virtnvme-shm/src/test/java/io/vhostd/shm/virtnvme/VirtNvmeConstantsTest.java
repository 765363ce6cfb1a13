package io.vhostd.shm.virtnvme;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Opcode and status values as the NVMe specifications number them. */
@Timeout(10)
class VirtNvmeConstantsTest {

    @ParameterizedTest
    @CsvSource({
        "0x00, NVME_OPC_FLUSH",
        "0x01, NVME_OPC_WRITE",
        "0x02, NVME_OPC_READ",
        "0x08, NVME_OPC_WRITE_ZEROES",
        "0x09, NVME_OPC_DATASET_MANAGEMENT",
    })
    void shouldNameOpcodeWhenNvmeDefinesIt(final String value, final String name) {
        final int opcode = Integer.decode(value);
        assertEquals(name, VirtNvmeOpcodes.name(opcode));
        assertTrue(VirtNvmeOpcodes.isDefined(opcode));
    }

    @Test
    void shouldPinOpcodeValuesWhenVersion1() {
        assertEquals(0x00, VirtNvmeOpcodes.NVME_OPC_FLUSH);
        assertEquals(0x01, VirtNvmeOpcodes.NVME_OPC_WRITE);
        assertEquals(0x02, VirtNvmeOpcodes.NVME_OPC_READ);
        assertEquals(0x08, VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES);
        assertEquals(0x09, VirtNvmeOpcodes.NVME_OPC_DATASET_MANAGEMENT);
    }

    @Test
    void shouldNameUnknownWhenOpcodeUndefined() {
        assertEquals("UNKNOWN(0x7f)", VirtNvmeOpcodes.name(0x7F));
        assertFalse(VirtNvmeOpcodes.isDefined(0x04));
    }

    @ParameterizedTest
    @CsvSource({
        "0x000, SUCCESS",
        "0x001, INVALID_OPCODE",
        "0x002, INVALID_FIELD",
        "0x004, DATA_TRANSFER_ERROR",
        "0x006, INTERNAL_ERROR",
        "0x080, LBA_OUT_OF_RANGE",
        "0x280, WRITE_FAULT",
        "0x281, UNRECOVERED_READ_ERROR",
    })
    void shouldNameStatusWhenNvmeDefinesIt(final String value, final String name) {
        assertEquals(name, VirtNvmeStatus.name(Integer.decode(value)));
    }

    @Test
    void shouldComposeStatusFieldWhenSctAndScGiven() {
        assertEquals(VirtNvmeStatus.WRITE_FAULT, VirtNvmeStatus.statusField(VirtNvmeStatus.SCT_MEDIA, 0x80));
        assertEquals(VirtNvmeStatus.SCT_MEDIA, VirtNvmeStatus.sct(VirtNvmeStatus.UNRECOVERED_READ_ERROR));
        assertEquals(0x81, VirtNvmeStatus.sc(VirtNvmeStatus.UNRECOVERED_READ_ERROR));
        assertEquals(VirtNvmeStatus.SCT_GENERIC, VirtNvmeStatus.sct(VirtNvmeStatus.LBA_OUT_OF_RANGE));
        assertEquals("UNKNOWN(sct=0x1, sc=0x2)", VirtNvmeStatus.name(0x102));
    }
}
