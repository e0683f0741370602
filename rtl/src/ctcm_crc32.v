// Parallel CRC-32 (IEEE 802.3 / zlib.crc32, reflected, polynomial 0xEDB88320)
// over up to 8 bytes per cycle: the bit-serial update unrolled into one XOR
// network (combinational). Byte k of the input is data[8*k +: 8] and comes
// k-th in the stream; only the first `nbytes` bytes are taken.
// The caller keeps the running value: start with 32'hFFFFFFFF, the CRC is
// ~crc_out after the last step (what zlib.crc32 returns).
`default_nettype none
module ctcm_crc32 (
    input  wire [31:0] crc_in,
    input  wire [63:0] data,
    input  wire [3:0]  nbytes,
    output reg  [31:0] crc_out
);
    integer i, j;
    always @* begin
        crc_out = crc_in;
        for (i = 0; i < 8; i = i + 1) begin
            if (i < nbytes) begin
                crc_out = crc_out ^ {24'd0, data[8*i +: 8]};
                for (j = 0; j < 8; j = j + 1)
                    crc_out = crc_out[0] ? ((crc_out >> 1) ^ 32'hEDB88320) : (crc_out >> 1);
            end
        end
    end
endmodule
`default_nettype wire
