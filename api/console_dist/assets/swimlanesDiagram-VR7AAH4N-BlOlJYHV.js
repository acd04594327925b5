import{r as e,t}from"./chunk-SHT3W25Y-C2p23xka.js";import"./chunk-POPQ4Y6H-BShXnLyI.js";import"./mermaid.core-BSbeokqH.js";import"./chunk-F27PBJKO-CK11yiJZ.js";import"./chunk-L3NEJ4N5-gs8F8r6u.js";import"./chunk-OSK3NFVY-DwmxAzpI.js";import"./chunk-GVQU2GXP-Dyx6ztyN.js";import"./chunk-4HAMMTFA-CqhyV3nM.js";import"./chunk-P2QGCYS3-CtgziL7p.js";import"./chunk-GMAD6QVW-DUaQFvs_.js";import"./chunk-PWAF6VOD-zxcTx6sD.js";import"./chunk-75Z2AOVW-DO_aEtM-.js";import"./chunk-DU6HZSFF-Na5mIvXX.js";import"./d3-selection-DgbDCtlK.js";import{n}from"./chunk-Y2CYZVJY-DsF7k-Jl.js";var r=t({defaultLayout:`swimlane`,styles:n(t=>`${e(t)}
  .swimlane.cluster rect {
    stroke: ${t.clusterBorder} !important;
  }
  [data-look="neo"].cluster rect {
    filter: none;
  }
`,`getStyles`)});export{r as diagram};