// Flow table of the CE -> CNP fast path: (remote IP, remote QPN) -> local QPN,
// written by the slow path (software tracking CM, through the register port),
// looked up by the data path. Fully associative (ENTRIES x 152-bit compare,
// registered result one cycle after `lookup`); the slow path chooses the
// index of each entry. Each entry also holds its CNP pacing state (time of
// its last CNP), which an add/remove clears when `clear_pace` is set: the
// model forgets it when the flow entry is removed.
`default_nettype none
module ctcm_flow_table #(
    parameter ENTRIES = 64,
    parameter IDX_W = 6
) (
    input  wire             clk,
    input  wire             rst,
    // slow path: write one entry
    input  wire             wr,
    input  wire [IDX_W-1:0] wr_idx,
    input  wire             wr_valid,     // 1: add / update, 0: remove
    input  wire             wr_clear_pace,
    input  wire [127:0]     wr_ip,
    input  wire [23:0]      wr_rqpn,
    input  wire [23:0]      wr_lqpn,
    // data path: look up (destination IP, destination QPN)
    input  wire             lookup,
    input  wire [127:0]     key_ip,
    input  wire [23:0]      key_qpn,
    output reg              hit,
    output reg  [IDX_W-1:0] hit_idx,
    output wire [23:0]      hit_lqpn,
    output wire             hit_paced,    // the entry has sent a CNP before
    output wire [47:0]      hit_last_us,  // ... at this time
    // data path: a CNP was sent for entry pace_idx at pace_us
    input  wire             pace_wr,
    input  wire [IDX_W-1:0] pace_idx,
    input  wire [47:0]      pace_us
);
    reg [127:0] ip    [0:ENTRIES-1];
    reg [23:0]  rqpn  [0:ENTRIES-1];
    reg [23:0]  lqpn  [0:ENTRIES-1];
    reg [47:0]  last  [0:ENTRIES-1];
    reg [ENTRIES-1:0] valid;
    reg [ENTRIES-1:0] paced;
    integer i;

    assign hit_lqpn = lqpn[hit_idx];
    assign hit_paced = paced[hit_idx];
    assign hit_last_us = last[hit_idx];

    always @(posedge clk) begin
        if (lookup) begin
            hit <= 1'b0;
            hit_idx <= {IDX_W{1'b0}};
            for (i = 0; i < ENTRIES; i = i + 1)
                if (valid[i] && ip[i] == key_ip && rqpn[i] == key_qpn) begin
                    hit <= 1'b1;
                    hit_idx <= i[IDX_W-1:0];
                end
        end
        if (pace_wr) begin
            paced[pace_idx] <= 1'b1;
            last[pace_idx] <= pace_us;
        end
        if (wr) begin  // after pace_wr: a slow-path write in the same cycle wins
            valid[wr_idx] <= wr_valid;
            ip[wr_idx] <= wr_ip;
            rqpn[wr_idx] <= wr_rqpn;
            lqpn[wr_idx] <= wr_lqpn;
            if (wr_clear_pace)
                paced[wr_idx] <= 1'b0;
        end
        if (rst) begin
            valid <= {ENTRIES{1'b0}};
            paced <= {ENTRIES{1'b0}};
            hit <= 1'b0;
        end
    end
endmodule
`default_nettype wire
