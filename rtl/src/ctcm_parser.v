// Frame classifier: what ctcm.packet.classify answers, from the first
// HDR_BYTES bytes of a frame (captured as it streams past) and its length.
// Combinational; every byte it reads lies inside the frame (the length
// checks come first, in the model's order), so stale bytes past the end
// of a short frame never decide anything.
//
// kind: 0 not RoCE, 1 RoCE, 2 CM MAD, 3 malformed, 4 unsupported (spec.Kind).
// Ethernet, one 802.1Q tag (a second tag or 802.1ad: unsupported), IPv4 with
// options (IHL 5..15; fragments are not RoCE), IPv6 (extension headers:
// unsupported), UDP 4791, BTH; a UD SEND_ONLY to QP1 is a MAD: 256 bytes,
// management class 7 = CM (base version 1, class version 2).
`default_nettype none
module ctcm_parser #(
    parameter HDR_BYTES = 112
) (
    input  wire [8*HDR_BYTES-1:0] hdr,     // frame byte i at hdr[8*i +: 8]
    input  wire [15:0]            nbytes,  // frame length
    output reg  [2:0]             kind,
    output reg                    vlan,    // one 802.1Q tag (IP header at 18)
    output reg                    ipv6,
    output reg  [1:0]             ecn,
    output reg  [7:0]             opcode,
    output reg  [23:0]            dqpn,
    output reg  [127:0]           src,     // IPv4 as ::ffff:a.b.c.d
    output reg  [127:0]           dst
);
    localparam [2:0] K_NOT_ROCE = 3'd0, K_ROCE = 3'd1, K_CM = 3'd2, K_MALFORMED = 3'd3, K_UNSUPPORTED = 3'd4;

`define B(i) hdr[8*(i) +: 8]
`define W(i) {hdr[8*(i) +: 8], hdr[8*((i)+1) +: 8]}

    reg [15:0] et, l3, l4, ihl, total, ip_end, ulen, bth;
    reg        udp_ok;
    reg [7:0]  ip0;       // the IP header's first byte (version, IHL)
    // Waiver: of the IP header's second byte only the ECN bits are used
    // (IPv4 [1:0], IPv6 [5:4], the low traffic-class bits); the rest is DSCP.
    /* verilator lint_off UNUSEDSIGNAL */
    reg [7:0]  ip1;
    /* verilator lint_on UNUSEDSIGNAL */

    always @* begin
        kind = K_NOT_ROCE;
        vlan = 1'b0;
        ipv6 = 1'b0;
        ecn = 2'd0;
        opcode = 8'd0;
        dqpn = 24'd0;
        src = 128'd0;
        dst = 128'd0;
        et = `W(12);
        l3 = 16'd14;
        l4 = 16'd0;
        ihl = 16'd0;
        total = 16'd0;
        ip_end = 16'd0;
        ulen = 16'd0;
        bth = 16'd0;
        udp_ok = 1'b0;
        ip0 = 8'd0;
        ip1 = 8'd0;
        if (nbytes < 16'd14) begin
            kind = K_MALFORMED;
        end else begin
            if (et == 16'h8100) begin
                if (nbytes < 16'd18) kind = K_MALFORMED;
                et = `W(16);
                l3 = 16'd18;
                vlan = 1'b1;
            end
            ip0 = `B(l3);
            ip1 = `B(l3 + 16'd1);
            if (kind == K_MALFORMED) begin
                // truncated tag
            end else if (et == 16'h88A8 || et == 16'h8100) begin
                kind = K_UNSUPPORTED;
            end else if (et == 16'h0800) begin
                ihl = {10'd0, ip0[3:0], 2'd0};
                total = `W(l3 + 16'd2);
                if (nbytes < l3 + 16'd20 || ip0[7:4] != 4'd4 || ihl < 16'd20 || total < ihl
                    || l3 + total > nbytes)
                    kind = K_MALFORMED;
                else if (`B(l3 + 16'd9) != 8'd17 || (`W(l3 + 16'd6) & 16'h3FFF) != 16'd0)
                    kind = K_NOT_ROCE;                     // not UDP, or a fragment
                else begin
                    udp_ok = 1'b1;
                    l4 = l3 + ihl;
                    ip_end = l3 + total;
                end
                ecn = ip1[1:0];
                src = {80'd0, 16'hFFFF, `B(l3 + 16'd12), `B(l3 + 16'd13), `B(l3 + 16'd14), `B(l3 + 16'd15)};
                dst = {80'd0, 16'hFFFF, `B(l3 + 16'd16), `B(l3 + 16'd17), `B(l3 + 16'd18), `B(l3 + 16'd19)};
            end else if (et == 16'h86DD) begin
                ipv6 = 1'b1;
                ip_end = l3 + 16'd40 + `W(l3 + 16'd4);
                if (nbytes < l3 + 16'd40 || ip0[7:4] != 4'd6 || ip_end > nbytes)
                    kind = K_MALFORMED;
                else if (`B(l3 + 16'd6) != 8'd17) begin
                    case (`B(l3 + 16'd6))  // spec.IPV6_EXTENSION_HEADERS
                        8'd0, 8'd43, 8'd44, 8'd50, 8'd51, 8'd60, 8'd135, 8'd139, 8'd140, 8'd253, 8'd254:
                            kind = K_UNSUPPORTED;
                        default: kind = K_NOT_ROCE;
                    endcase
                end else begin
                    udp_ok = 1'b1;
                    l4 = l3 + 16'd40;
                end
                ecn = ip1[5:4];
                src = {`B(l3 + 16'd8), `B(l3 + 16'd9), `B(l3 + 16'd10), `B(l3 + 16'd11),
                       `B(l3 + 16'd12), `B(l3 + 16'd13), `B(l3 + 16'd14), `B(l3 + 16'd15),
                       `B(l3 + 16'd16), `B(l3 + 16'd17), `B(l3 + 16'd18), `B(l3 + 16'd19),
                       `B(l3 + 16'd20), `B(l3 + 16'd21), `B(l3 + 16'd22), `B(l3 + 16'd23)};
                dst = {`B(l3 + 16'd24), `B(l3 + 16'd25), `B(l3 + 16'd26), `B(l3 + 16'd27),
                       `B(l3 + 16'd28), `B(l3 + 16'd29), `B(l3 + 16'd30), `B(l3 + 16'd31),
                       `B(l3 + 16'd32), `B(l3 + 16'd33), `B(l3 + 16'd34), `B(l3 + 16'd35),
                       `B(l3 + 16'd36), `B(l3 + 16'd37), `B(l3 + 16'd38), `B(l3 + 16'd39)};
            end
            if (udp_ok) begin
                ulen = `W(l4 + 16'd4);
                bth = l4 + 16'd8;
                if (ip_end - l4 < 16'd8)
                    kind = K_MALFORMED;
                else if (`W(l4 + 16'd2) != 16'd4791)
                    kind = K_NOT_ROCE;
                else if (ulen < 16'd8 || l4 + ulen > ip_end)
                    kind = K_MALFORMED;
                else if (ulen < 16'd24)                     // no room for BTH and ICRC
                    kind = K_MALFORMED;
                else begin
                    opcode = `B(bth);
                    dqpn = {`B(bth + 16'd5), `B(bth + 16'd6), `B(bth + 16'd7)};
                    if (opcode != 8'h64 || dqpn != 24'd1)
                        kind = K_ROCE;
                    else if (ulen != 16'd288)               // UDP 8 + BTH 12 + DETH 8 + MAD 256 + ICRC 4
                        kind = K_MALFORMED;
                    else if (`B(bth + 16'd21) != 8'h07)     // management class: not CM
                        kind = K_ROCE;
                    else if (`B(bth + 16'd20) != 8'd1 || `B(bth + 16'd22) != 8'd2)
                        kind = K_MALFORMED;
                    else
                        kind = K_CM;
                end
            end
        end
    end
`undef B
`undef W
endmodule
`default_nettype wire
