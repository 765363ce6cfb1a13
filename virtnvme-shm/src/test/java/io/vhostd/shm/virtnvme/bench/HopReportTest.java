package io.vhostd.shm.virtnvme.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class HopReportTest {
    private static final String SECTION = HopReport.HEADING + "\n\nnew numbers\n";

    @Test
    void shouldReplaceOnlyOwnSectionWhenOthersSurroundIt() {
        String doc = "# Benchmarks\n\n## libblkio\n\nkeep me\n\n" + HopReport.HEADING + "\n\nold numbers\n\n"
                + "### sub\n\nold too\n\n## Later\n\nkeep me too\n";
        assertEquals(
                "# Benchmarks\n\n## libblkio\n\nkeep me\n\n" + SECTION + "\n## Later\n\nkeep me too\n",
                HopReport.replaceSection(doc, SECTION));
    }

    @Test
    void shouldReplaceToEndWhenSectionIsLast() {
        String doc = "# Benchmarks\n\n## libblkio\n\nkeep me\n\n" + HopReport.HEADING + "\n\nold\n";
        assertEquals("# Benchmarks\n\n## libblkio\n\nkeep me\n\n" + SECTION, HopReport.replaceSection(doc, SECTION));
    }

    @Test
    void shouldAppendWhenSectionIsAbsent() {
        assertEquals("# B\n\n## x\n\n" + SECTION, HopReport.replaceSection("# B\n\n## x\n", SECTION));
        assertEquals("# Benchmarks\n\n" + SECTION, HopReport.replaceSection("", SECTION));
    }

    @Test
    void shouldWrapProseButNotTablesWhenLinesAreLong() {
        String md = "- one two three four five\n| a | b c d e f g h |\n```\nlong code line here\n```\nshort\n";
        assertEquals(
                "- one two\n  three\n  four\n  five\n| a | b c d e f g h |\n```\nlong code line here\n```\nshort\n",
                HopReport.wrap(md, 10));
    }

    @Test
    void shouldTakeMiddleValueWhenComputingMedian() {
        assertEquals(2.0, HopReport.median(new double[] {3, 1, 2}));
        assertEquals(2.5, HopReport.median(new double[] {4, 1, 2, 3}));
        assertTrue(Double.isNaN(HopReport.median(new double[0])));
    }

    @Test
    void shouldRoundTripTsvAndRenderTargetsWhenGivenResults() {
        HopResult r = new HopResult(
                1,
                "poll-qd1",
                "poll",
                1,
                0,
                1000,
                1_000_000,
                800,
                2000,
                5000,
                9000,
                1_000_000,
                900_000,
                1_000_000,
                900_000,
                0,
                0,
                1000,
                1,
                1,
                0,
                0,
                -1,
                -1,
                0.5);
        assertEquals(r, HopResult.fromTsv(r.toTsv()));
        String section = HopReport.section(List.of(r), List.of(), "", "-XX:+UseZGC", "2 vCPUs", "today");
        assertTrue(section.startsWith(HopReport.HEADING + "\n"), section);
        assertTrue(section.contains("poll-qd1 p50 = 800 ns: **met**"), section);
    }
}
