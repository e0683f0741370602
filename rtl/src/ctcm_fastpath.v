// The CE -> CNP fast path of ctcm: the per-packet half of the DPU split (the
// CM tracking is software: the slow path writes the flow table through the
// register port). Bump in the wire between a host-side port (h, ctcm port 1)
// and a network-side port (n, ctcm port 2); see rtl/README.md.
//
// One pipeline serves both ports, a frame at a time, like the model
// (ctcm.pipeline.Pipeline.process) and the P4 program:
//   IDLE   pick an ingress port (round robin between frames), latch ts_us
//   FWD    the frame passes unchanged to the peer port (AXI-Stream, cut
//          through, backpressure from the egress to the ingress); its first
//          HDR_BYTES bytes and its length are kept
//   PARSE  classify (ctcm_parser), registered
//   LOOKUP flow table (destination IP, destination QPN)
//   DECIDE counters; CE-marked RoCE data from the host side on a tracked flow,
//          not paced away, makes a CNP
//   CRC    the CNP's ICRC, 8 bytes per cycle (ctcm_crc32)
//   EMIT   the CNP towards the host port, then IDLE
// The next frame is taken only once the previous one's CNP is out, so each
// egress port carries its frames in the model's order.
//
// Faults for the negative controls (never in a real build):
//   -DFAULT_ICRC_BYTE_ORDER  the CNP's ICRC sent big-endian
//   -DFAULT_DROP_VLAN        the CNP of a tagged frame loses the 802.1Q tag
`default_nettype none
module ctcm_fastpath #(
    parameter DATA_W = 64,             // AXI-Stream data width: 8 * 2^n, 16..1024
    parameter FLOW_ENTRIES = 64,
    parameter FLOW_IDX_W = 6           // clog2(FLOW_ENTRIES)
) (
    input  wire                clk,
    input  wire                rst,             // synchronous, active high
    input  wire [47:0]         ts_us,           // time in µs (a PTP counter), sampled at frame start
    // host side in / out (ctcm port 1)
    input  wire [DATA_W-1:0]   s_axis_h_tdata,
    input  wire [DATA_W/8-1:0] s_axis_h_tkeep,
    input  wire                s_axis_h_tvalid,
    output wire                s_axis_h_tready,
    input  wire                s_axis_h_tlast,
    output wire [DATA_W-1:0]   m_axis_h_tdata,
    output wire [DATA_W/8-1:0] m_axis_h_tkeep,
    output wire                m_axis_h_tvalid,
    input  wire                m_axis_h_tready,
    output wire                m_axis_h_tlast,
    // network side in / out (ctcm port 2)
    input  wire [DATA_W-1:0]   s_axis_n_tdata,
    input  wire [DATA_W/8-1:0] s_axis_n_tkeep,
    input  wire                s_axis_n_tvalid,
    output wire                s_axis_n_tready,
    input  wire                s_axis_n_tlast,
    output wire [DATA_W-1:0]   m_axis_n_tdata,
    output wire [DATA_W/8-1:0] m_axis_n_tkeep,
    output wire                m_axis_n_tvalid,
    input  wire                m_axis_n_tready,
    output wire                m_axis_n_tlast,
    // register port (rtl/README.md "Register map"): a write takes effect at
    // the clock edge; a read answers on reg_rdata with reg_rvalid one cycle later
    input  wire                reg_wr,
    input  wire                reg_rd,
    input  wire [7:0]          reg_addr,
    input  wire [31:0]         reg_wdata,
    output reg  [31:0]         reg_rdata,
    output reg                 reg_rvalid
);
    localparam KEEP_W = DATA_W / 8;
    localparam HDR_BYTES = 112;          // Ethernet + 802.1Q + IPv4 with options + UDP + BTH + DETH + MAD class version
    localparam CNP_BYTES = 128;          // longest CNP: 18 + 80 = 98 bytes, padded to whole beats
    localparam [2:0] S_IDLE = 3'd0, S_FWD = 3'd1, S_PARSE = 3'd2, S_LOOKUP = 3'd3, S_DECIDE = 3'd4,
                     S_CRC = 3'd5, S_EMIT = 3'd6;
    localparam [2:0] K_NOT_ROCE = 3'd0, K_ROCE = 3'd1, K_CM = 3'd2, K_MALFORMED = 3'd3, K_UNSUPPORTED = 3'd4;
    localparam NCOUNTERS = 11;

    reg [2:0] state;
    reg       from_host;    // the frame in the pipeline came in on the host port
    reg       prio_net;     // round robin: the network port goes first next time
    reg [47:0] now_us;

    // ---- forwarding ------------------------------------------------------------
    wire fwd = state == S_FWD;
    wire emit = state == S_EMIT;
    wire [DATA_W-1:0] cnp_tdata;
    wire [KEEP_W-1:0] cnp_tkeep;
    wire cnp_tlast;

    assign s_axis_h_tready = fwd && from_host && m_axis_n_tready;
    assign s_axis_n_tready = fwd && !from_host && m_axis_h_tready;
    assign m_axis_n_tvalid = fwd && from_host && s_axis_h_tvalid;
    assign m_axis_n_tdata = s_axis_h_tdata;
    assign m_axis_n_tkeep = s_axis_h_tkeep;
    assign m_axis_n_tlast = s_axis_h_tlast;
    assign m_axis_h_tvalid = emit || (fwd && !from_host && s_axis_n_tvalid);
    assign m_axis_h_tdata = emit ? cnp_tdata : s_axis_n_tdata;
    assign m_axis_h_tkeep = emit ? cnp_tkeep : s_axis_n_tkeep;
    assign m_axis_h_tlast = emit ? cnp_tlast : s_axis_n_tlast;

    wire [DATA_W-1:0] in_data = from_host ? s_axis_h_tdata : s_axis_n_tdata;
    wire [KEEP_W-1:0] in_keep = from_host ? s_axis_h_tkeep : s_axis_n_tkeep;
    wire in_last = from_host ? s_axis_h_tlast : s_axis_n_tlast;
    wire beat = from_host ? (s_axis_h_tvalid && s_axis_h_tready) : (s_axis_n_tvalid && s_axis_n_tready);

    // ---- header capture --------------------------------------------------------
    reg [8*HDR_BYTES-1:0] hdr;
    reg [15:0] off;         // frame offset of the current beat
    reg [15:0] nbytes;      // frame length so far
    reg [15:0] keep_count;
    integer k;
    always @* begin
        keep_count = 16'd0;
        for (k = 0; k < KEEP_W; k = k + 1)
            keep_count = keep_count + {15'd0, in_keep[k]};
    end
    always @(posedge clk) begin
        if (state == S_IDLE) begin
            off <= 16'd0;
            nbytes <= 16'd0;
        end else if (beat) begin
            for (k = 0; k < KEEP_W; k = k + 1)
                if ({16'd0, off} + k < HDR_BYTES)
                    hdr[8*({16'd0, off} + k) +: 8] <= in_data[8*k +: 8];
            off <= off + KEEP_W[15:0];
            nbytes <= off + keep_count;
        end
    end

    // ---- classification --------------------------------------------------------
    wire [2:0] c_kind;
    wire c_vlan, c_ipv6;
    wire [1:0] c_ecn;
    wire [7:0] c_opcode;
    wire [23:0] c_dqpn;
    wire [127:0] c_src, c_dst;
    ctcm_parser #(.HDR_BYTES(HDR_BYTES)) parser (
        .hdr(hdr), .nbytes(nbytes), .kind(c_kind), .vlan(c_vlan), .ipv6(c_ipv6), .ecn(c_ecn),
        .opcode(c_opcode), .dqpn(c_dqpn), .src(c_src), .dst(c_dst));
    reg [2:0] p_kind;
    reg p_vlan, p_ipv6;
    reg [1:0] p_ecn;
    reg [7:0] p_opcode;
    reg [23:0] p_dqpn;
    reg [127:0] p_src, p_dst;
    reg [8*18-1:0] p_l2;    // the frame's first 18 bytes (Ethernet, 802.1Q tag)

    // ---- flow table and register port ------------------------------------------
    reg [47:0] cnp_interval_us;
    reg [127:0] w_ip;
    reg [23:0] w_rqpn, w_lqpn;
    wire cmd_wr = reg_wr && reg_addr == 8'h28 && {16'd0, reg_wdata[15:0]} < FLOW_ENTRIES;
    wire hit, hit_paced;
    wire [FLOW_IDX_W-1:0] hit_idx;
    wire [23:0] hit_lqpn;
    wire [47:0] hit_last_us;
    wire ce = p_kind == K_ROCE && from_host && p_opcode != 8'h81 && p_ecn == 2'b11;
    wire paced_away = cnp_interval_us != 48'd0 && hit_paced && now_us - hit_last_us < cnp_interval_us;
    wire send_cnp = state == S_DECIDE && ce && hit && !paced_away;
    ctcm_flow_table #(.ENTRIES(FLOW_ENTRIES), .IDX_W(FLOW_IDX_W)) flows (
        .clk(clk), .rst(rst),
        .wr(cmd_wr), .wr_idx(reg_wdata[FLOW_IDX_W-1:0]), .wr_valid(reg_wdata[16]), .wr_clear_pace(reg_wdata[17]),
        .wr_ip(w_ip), .wr_rqpn(w_rqpn), .wr_lqpn(w_lqpn),
        .lookup(state == S_LOOKUP), .key_ip(p_dst), .key_qpn(p_dqpn),
        .hit(hit), .hit_idx(hit_idx), .hit_lqpn(hit_lqpn), .hit_paced(hit_paced), .hit_last_us(hit_last_us),
        .pace_wr(send_cnp && cnp_interval_us != 48'd0), .pace_idx(hit_idx), .pace_us(now_us));

    // counters: packets, forwarded, not_roce, roce, cm, malformed, unsupported,
    // ce_packets, ce_untracked, cnp_sent, cnp_suppressed (the model's names)
    reg [31:0] counter [0:NCOUNTERS-1];
    wire [3:0] counter_idx = reg_addr[5:2];  // (reg_addr - 0x40) / 4 for 0x40 <= reg_addr < 0x80
    integer c;

    // ---- the CNP -------------------------------------------------------------------
    reg [23:0] cnp_lqpn;
    reg [31:0] crc;
    reg [3:0] crc_word;
    reg [7:0] emit_off;
    wire [31:0] crc_next;
    // Addresses: the CNP goes back to the sender (source = the packet's destination).
    wire [31:0] s4 = p_dst[31:0], d4 = p_src[31:0];
    wire [31:0] csum_sum = 32'h1850F  // 0x45C2 + 0x003C + 0x0000 + 0x4000 + 0xFF11: the template's words
        + {16'd0, s4[31:16]} + {16'd0, s4[15:0]} + {16'd0, d4[31:16]} + {16'd0, d4[15:0]};
    wire [31:0] csum_fold1 = {16'd0, csum_sum[15:0]} + {16'd0, csum_sum[31:16]};
    wire [15:0] csum = ~(csum_fold1[15:0] + csum_fold1[31:16]);
    wire [31:0] icrc = ~crc;
`ifdef FAULT_ICRC_BYTE_ORDER
    wire [31:0] icrc_wire = icrc;                                        // fault: big-endian
`else
    wire [31:0] icrc_wire = {icrc[7:0], icrc[15:8], icrc[23:16], icrc[31:24]};  // little-endian on the wire
`endif
    // Big-endian images (byte 0 in the top bits): the CNP from its IP header on,
    // and the ICRC's input (8 bytes of ones, then the IP..payload part with
    // the variant fields set to ones), both per IP version.
    wire [8*60-1:0] ip4_be = {8'h45, 8'hC2, 16'd60, 16'd0, 16'h4000, 8'hFF, 8'h11, csum, s4, d4,
                              16'hF000, 16'd4791, 16'd40, 16'd0,
                              8'h81, 8'h00, 16'hFFFF, 8'h40, cnp_lqpn, 32'd0, 128'd0, 32'd0};
    wire [8*80-1:0] ip6_be = {8'h6C, 8'h20, 16'd0, 16'd40, 8'h11, 8'hFF, p_dst, p_src,
                              16'hF000, 16'd4791, 16'd40, 16'd0,
                              8'h81, 8'h00, 16'hFFFF, 8'h40, cnp_lqpn, 32'd0, 128'd0, 32'd0};
    wire [8*64-1:0] cb4_be = {64'hFFFFFFFFFFFFFFFF, 8'h45, 8'hFF, 16'd60, 16'd0, 16'h4000, 8'hFF, 8'h11, 16'hFFFF,
                              s4, d4, 16'hF000, 16'd4791, 16'd40, 16'hFFFF,
                              8'h81, 8'h00, 16'hFFFF, 8'hFF, cnp_lqpn, 32'd0, 128'd0};
    wire [8*88-1:0] cb6_be = {64'hFFFFFFFFFFFFFFFF, 8'h6F, 24'hFFFFFF, 16'd40, 8'h11, 8'hFF, p_dst, p_src,
                              16'hF000, 16'd4791, 16'd40, 16'hFFFF,
                              8'h81, 8'h00, 16'hFFFF, 8'hFF, cnp_lqpn, 32'd0, 128'd0, 32'd0};
`ifdef FAULT_DROP_VLAN
    wire cnp_vlan = 1'b0;
    wire [15:0] cnp_ethertype = p_vlan ? p_l2[8*16 +: 16] : p_l2[8*12 +: 16];
`else
    wire cnp_vlan = p_vlan;
    wire [15:0] cnp_ethertype = p_l2[8*12 +: 16];
`endif
    // Little-endian images (byte i at [8*i +: 8]) for the beats and the CRC.
    reg [8*CNP_BYTES-1:0] cnp_le;
    reg [8*88-1:0] cb_le;
    reg [7:0] cnp_len;
    integer b;
    always @* begin
        cnp_le = {8*CNP_BYTES{1'b0}};
        cb_le = {8*88{1'b0}};
        cnp_le[0 +: 48] = p_l2[8*6 +: 48];                 // destination MAC = the packet's source
        cnp_le[48 +: 48] = p_l2[0 +: 48];                  // source MAC = the packet's destination
        cnp_le[96 +: 16] = cnp_ethertype;                  // 802.1Q TPID or the ethertype
        if (cnp_vlan)
            cnp_le[112 +: 32] = p_l2[8*14 +: 32];          // TCI and the ethertype
        for (b = 0; b < 80; b = b + 1) begin
            if (p_ipv6)
                cnp_le[8*(b + (cnp_vlan ? 18 : 14)) +: 8] = ip6_be[8*(79 - b) +: 8];
            else if (b < 60)
                cnp_le[8*(b + (cnp_vlan ? 18 : 14)) +: 8] = ip4_be[8*(59 - b) +: 8];
        end
        for (b = 0; b < 88; b = b + 1) begin
            if (p_ipv6)
                cb_le[8*b +: 8] = cb6_be[8*(87 - b) +: 8];
            else if (b < 64)
                cb_le[8*b +: 8] = cb4_be[8*(63 - b) +: 8];
        end
        cnp_len = (cnp_vlan ? 8'd18 : 8'd14) + (p_ipv6 ? 8'd80 : 8'd60);
    end
    // ICRC input: 64 bytes (IPv4) or 84 (IPv6); the last IPv6 word has 4 bytes.
    wire [3:0] crc_last = p_ipv6 ? 4'd10 : 4'd7;
    ctcm_crc32 crc32 (.crc_in(crc), .data(cb_le[64*crc_word +: 64]),
                      .nbytes((p_ipv6 && crc_word == 4'd10) ? 4'd4 : 4'd8), .crc_out(crc_next));
    wire [7:0] emit_left = cnp_len - emit_off;
    wire [7:0] icrc_at = cnp_len - 8'd4;                   // the ICRC: the CNP's last 4 bytes
    reg [DATA_W-1:0] beat_data;
    integer e;
    always @* begin
        beat_data = cnp_le[8*emit_off +: DATA_W];
        for (e = 0; e < KEEP_W; e = e + 1)
            if ({24'd0, emit_off} + e >= {24'd0, icrc_at} && {24'd0, emit_off} + e < {24'd0, cnp_len})
                beat_data[8*e +: 8] = icrc_wire[8*(3 - ({24'd0, emit_off} + e - {24'd0, icrc_at})) +: 8];
    end
    assign cnp_tdata = beat_data;
    assign cnp_tlast = {24'd0, emit_left} <= KEEP_W;
    assign cnp_tkeep = cnp_tlast ? ~({KEEP_W{1'b1}} << emit_left) : {KEEP_W{1'b1}};

    // ---- control ---------------------------------------------------------------------
    always @(posedge clk) begin
        case (state)
            S_IDLE:
                if (s_axis_h_tvalid && (!prio_net || !s_axis_n_tvalid)) begin
                    from_host <= 1'b1;
                    prio_net <= 1'b1;
                    now_us <= ts_us;
                    state <= S_FWD;
                end else if (s_axis_n_tvalid) begin
                    from_host <= 1'b0;
                    prio_net <= 1'b0;
                    now_us <= ts_us;
                    state <= S_FWD;
                end
            S_FWD:
                if (beat && in_last)
                    state <= S_PARSE;
            S_PARSE: begin
                p_kind <= c_kind;
                p_vlan <= c_vlan;
                p_ipv6 <= c_ipv6;
                p_ecn <= c_ecn;
                p_opcode <= c_opcode;
                p_dqpn <= c_dqpn;
                p_src <= c_src;
                p_dst <= c_dst;
                p_l2 <= hdr[0 +: 8*18];
                state <= S_LOOKUP;
            end
            S_LOOKUP:
                state <= S_DECIDE;
            S_DECIDE: begin
                counter[0] <= counter[0] + 32'd1;                                // packets
                counter[1] <= counter[1] + 32'd1;                                // forwarded
                case (p_kind)
                    K_NOT_ROCE: counter[2] <= counter[2] + 32'd1;
                    K_ROCE: counter[3] <= counter[3] + 32'd1;
                    K_CM: counter[4] <= counter[4] + 32'd1;
                    K_MALFORMED: counter[5] <= counter[5] + 32'd1;
                    K_UNSUPPORTED: counter[6] <= counter[6] + 32'd1;
                    default: ;
                endcase
                if (ce) begin
                    counter[7] <= counter[7] + 32'd1;                            // ce_packets
                    if (!hit)
                        counter[8] <= counter[8] + 32'd1;                        // ce_untracked
                    else if (paced_away)
                        counter[10] <= counter[10] + 32'd1;                      // cnp_suppressed
                    else
                        counter[9] <= counter[9] + 32'd1;                        // cnp_sent
                end
                cnp_lqpn <= hit_lqpn;
                crc <= 32'hFFFFFFFF;
                crc_word <= 4'd0;
                emit_off <= 8'd0;
                state <= send_cnp ? S_CRC : S_IDLE;
            end
            S_CRC: begin
                crc <= crc_next;
                crc_word <= crc_word + 4'd1;
                if (crc_word == crc_last)
                    state <= S_EMIT;
            end
            S_EMIT:
                if (m_axis_h_tready) begin
                    emit_off <= emit_off + KEEP_W[7:0];
                    if (cnp_tlast)
                        state <= S_IDLE;
                end
            default:
                state <= S_IDLE;
        endcase
        // register port
        reg_rvalid <= reg_rd;
        if (reg_rd) begin
            case (reg_addr)
                8'h00: reg_rdata <= 32'hC7C0_0001;                               // ID
                8'h04: reg_rdata <= {FLOW_ENTRIES[15:0], DATA_W[15:0]};
                8'h08: reg_rdata <= cnp_interval_us[31:0];
                8'h0C: reg_rdata <= {16'd0, cnp_interval_us[47:32]};
                default:
                    if (reg_addr >= 8'h40 && reg_addr < 8'h40 + 4 * NCOUNTERS)
                        reg_rdata <= counter[counter_idx];
                    else
                        reg_rdata <= 32'd0;
            endcase
        end
        if (reg_wr) begin
            case (reg_addr)
                8'h08: cnp_interval_us[31:0] <= reg_wdata;
                8'h0C: cnp_interval_us[47:32] <= reg_wdata[15:0];
                8'h10: w_ip[127:96] <= reg_wdata;
                8'h14: w_ip[95:64] <= reg_wdata;
                8'h18: w_ip[63:32] <= reg_wdata;
                8'h1C: w_ip[31:0] <= reg_wdata;
                8'h20: w_rqpn <= reg_wdata[23:0];
                8'h24: w_lqpn <= reg_wdata[23:0];
                default: ;
            endcase
        end
        if (rst) begin
            state <= S_IDLE;
            from_host <= 1'b0;
            prio_net <= 1'b0;
            cnp_interval_us <= 48'd0;
            reg_rvalid <= 1'b0;
            for (c = 0; c < NCOUNTERS; c = c + 1)
                counter[c] <= 32'd0;
        end
    end
endmodule
`default_nettype wire
