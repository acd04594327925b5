import{r as e,t}from"./chunk-SHT3W25Y-DhFnSWTO.js";import"./chunk-POPQ4Y6H-DGggktLe.js";import"./mermaid.core-BLPCbm9T.js";import"./chunk-F27PBJKO-rxm-Uqa9.js";import"./chunk-L3NEJ4N5-BlIx-rlL.js";import"./chunk-OSK3NFVY-CSECH2vB.js";import"./chunk-GVQU2GXP-BKi1bG5i.js";import"./chunk-4HAMMTFA-CtHijbgu.js";import"./chunk-P2QGCYS3-C_W79Ot8.js";import"./chunk-GMAD6QVW-DIOA4VoC.js";import"./chunk-PWAF6VOD-BySZE-Vg.js";import"./chunk-75Z2AOVW-Cd8OhY46.js";import"./chunk-DU6HZSFF-ctcZav94.js";import"./d3-selection-vowwzerO.js";import{n}from"./chunk-Y2CYZVJY-DsF7k-Jl.js";var r=t({defaultLayout:`swimlane`,styles:n(t=>`${e(t)}
  .swimlane.cluster rect {
    stroke: ${t.clusterBorder} !important;
  }
  [data-look="neo"].cluster rect {
    filter: none;
  }
`,`getStyles`)});export{r as diagram};