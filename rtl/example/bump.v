// A user's own DUT, for the kit's worked example (rtl/README.md): a plain
// bump in the wire (each port's frames go out unchanged on the other one),
// with its own port names, no timestamp input and no control plane. It makes
// no CNPs, so vectors without CNPs pass and a CE vector fails (missing CNPs).
`default_nettype none
module bump #(parameter DATA_W = 64) (
    input  wire                clk,
    input  wire                rst,
    input  wire [DATA_W-1:0]   host_rx_tdata,
    input  wire [DATA_W/8-1:0] host_rx_tkeep,
    input  wire                host_rx_tvalid,
    output wire                host_rx_tready,
    input  wire                host_rx_tlast,
    output wire [DATA_W-1:0]   host_tx_tdata,
    output wire [DATA_W/8-1:0] host_tx_tkeep,
    output wire                host_tx_tvalid,
    input  wire                host_tx_tready,
    output wire                host_tx_tlast,
    input  wire [DATA_W-1:0]   net_rx_tdata,
    input  wire [DATA_W/8-1:0] net_rx_tkeep,
    input  wire                net_rx_tvalid,
    output wire                net_rx_tready,
    input  wire                net_rx_tlast,
    output wire [DATA_W-1:0]   net_tx_tdata,
    output wire [DATA_W/8-1:0] net_tx_tkeep,
    output wire                net_tx_tvalid,
    input  wire                net_tx_tready,
    output wire                net_tx_tlast
);
    assign net_tx_tdata = host_rx_tdata;
    assign net_tx_tkeep = host_rx_tkeep;
    assign net_tx_tvalid = host_rx_tvalid && !rst;
    assign net_tx_tlast = host_rx_tlast;
    assign host_rx_tready = net_tx_tready && !rst;
    assign host_tx_tdata = net_rx_tdata;
    assign host_tx_tkeep = net_rx_tkeep;
    assign host_tx_tvalid = net_rx_tvalid && !rst;
    assign host_tx_tlast = net_rx_tlast;
    assign net_rx_tready = host_tx_tready && !rst;
endmodule
`default_nettype wire
